"""Settings: a TOML file (``--config``) with environment overrides (``KETAMINE_CDS_CDS__PUBLIC_BASE_URL=…``).

pydantic-settings does the layering (environment over file over defaults) and the validation, so a bad file is a
clear message rather than a crash at the first request.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(Exception):
    """The configuration cannot be used; the message says why."""


class CdsClientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=1)
    jwks_url: str | None = None
    jwks_file: Path | None = None
    tenant: str | None = None
    #: The ``fhirServer`` origins (``https://fhir.example.org``, a port when not the default) this client may send;
    #: empty: any origin that resolves to public addresses.
    fhir_servers: list[str] = Field(default_factory=list)
    #: Networks outside the public internet (loopback, link-local, private, ...) its ``fhirServer`` may resolve to,
    #: as CIDR ("10.20.0.0/16"); empty: none.
    fhir_server_networks: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_key_source(self) -> CdsClientSettings:
        from cds_hooks.fhir_servers import origin, parse_networks

        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError(f"client {self.issuer}: give exactly one of jwks_url or jwks_file")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError(f"client {self.issuer}: jwks_url must be an http(s) URL")
        for server in self.fhir_servers:
            try:
                found = origin(server)
            except ValueError:
                found = None
            if found is None or found != server.rstrip("/").lower():
                raise ValueError(f"client {self.issuer}: fhir_servers: {server!r} is not an origin "
                                 f"(scheme://host[:port], no path){f'; did you mean {found!r}?' if found else ''}")
        try:
            parse_networks(self.fhir_server_networks)
        except ValueError as exc:
            raise ValueError(f"client {self.issuer}: fhir_server_networks: {exc}") from exc
        return self


class CdsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_base_url: str = "http://127.0.0.1:8000"
    cors_allow_origins: list[str] = Field(default_factory=list)
    clients: list[CdsClientSettings] = Field(default_factory=list)
    discovery_requires_auth: bool = False
    max_body_bytes: int = Field(default=5_000_000, gt=0)
    fhir_budget_s: float = Field(default=2.5, gt=0)
    #: A FHIR response larger than this is not read (its search becomes a data gap): bounded memory per call.
    fhir_max_response_bytes: int = Field(default=20_000_000, gt=0)
    #: All FHIR responses of one assessment together.
    fhir_max_total_bytes: int = Field(default=60_000_000, gt=0)
    #: The longest lifetime (exp - iat, seconds) of a CDS client's JWT; 60 s of clock leeway is added.
    jwt_max_lifetime_s: float = Field(default=300, gt=0)
    policy: str = "default"
    feedback_db: Path = Path("ketamine-cds-feedback.sqlite3")
    audit_log: Path | None = None
    #: Salt of the patient-id hashes in the audit log. Empty: a random salt is generated on first start and kept
    #: in ``audit_salt_file`` (beside the feedback database unless set).
    audit_salt: str = ""
    audit_salt_file: Path | None = None
    #: order-sign leaves out a non-critical card order-select showed, unchanged, for the same draft order within
    #: this many seconds (0: always repeat).
    repeat_window_s: float = Field(default=300, ge=0)
    #: At most this many cards in one answer; over it, the most urgent and one card saying what was left out.
    max_cards: int = Field(default=20, ge=2, le=200)

    @model_validator(mode="after")
    def _url(self) -> CdsSettings:
        if not self.public_base_url.startswith(("https://", "http://")):
            raise ValueError("cds.public_base_url must be an http(s) URL")
        self.public_base_url = self.public_base_url.rstrip("/")
        return self


class SmartSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = "ketamine-cds"
    client_secret: str | None = None
    client_secret_file: Path | None = None
    private_key_file: Path | None = None
    alg: Literal["RS384", "ES384"] = "RS384"
    redirect_uri: str | None = None
    allowed_issuers: list[str] = Field(default_factory=list)
    frame_ancestors: list[str] = Field(default_factory=list)
    default_iss: str | None = None
    offline_access: bool = False
    fhir_budget_s: float = Field(default=10.0, gt=0)
    #: How long a started launch waits for the EHR's callback (seconds).
    launch_ttl_s: float = Field(default=600, gt=0, le=3600)
    #: How long a login (what a completed launch leaves: the tokens behind one review) lasts, refreshes included;
    #: at most the browser-binding cookie's 12 hours.
    login_ttl_s: float = Field(default=8 * 3600, gt=0, le=12 * 3600)
    #: At most this many launches pending at once (started, not completed, not expired), on all replicas together:
    #: anyone may start one, so a flood is capped here; over it, launches answer 503 until some complete or expire.
    max_pending_launches: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _one_credential(self) -> SmartSettings:
        if self.client_secret and self.private_key_file:
            raise ValueError("smart: give client_secret or private_key_file, not both")
        for origin in self.frame_ancestors:
            if not origin.startswith(("https://", "http://")) or any(c in origin for c in " ;'\""):
                raise ValueError(f"smart.frame_ancestors: {origin!r} is not an origin")
        return self


class SessionSettings(BaseModel):
    """How the session services recognise a ketamine/esketamine treatment appointment."""

    model_config = ConfigDict(extra="forbid")
    #: ``system|code`` of the site's appointment types (serviceType, appointmentType or reasonCode) for esketamine or
    #: ketamine sessions. Appointments are also recognised by their text and by basedOn an order for those drugs.
    appointment_codes: list[str] = Field(default_factory=list)
    #: The IANA time zone of the times on session cards ("Europe/Berlin"); empty: the offset the EHR recorded (an
    #: EHR that records in UTC would otherwise show clinicians UTC clock times).
    display_timezone: str = ""
    #: At most this many entries (appointments and the orders sent with them) in one appointment-book request's
    #: ``context.appointments``; over it, a 400. Each is validated and read and can give several cards.
    max_appointments: int = Field(default=50, ge=1, le=1000)

    @model_validator(mode="after")
    def _system_and_code(self) -> SessionSettings:
        if self.display_timezone:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.display_timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"sessions.display_timezone: {self.display_timezone!r} is not an IANA time zone "
                                 "(e.g. Europe/Berlin)") from exc
        for value in self.appointment_codes:
            system, bar, code = value.partition("|")
            if not bar or not system or not code:
                raise ValueError(f"sessions.appointment_codes: {value!r} is not system|code")
        return self


class StorageSettings(BaseModel):
    """Where shared state lives: feedback, issued cards, the JWT replay store, SMART launches and sessions."""

    model_config = ConfigDict(extra="forbid")
    #: Empty: the embedded SQLite file ``cds.feedback_db`` (one machine). ``postgresql://user@host/db`` for replicas.
    database_url: str = ""
    #: A file holding the URL (a secret when it carries a password); wins over ``database_url``.
    database_url_file: Path | None = None
    #: The Fernet key sealing SMART tokens at rest. Required with PostgreSQL; with SQLite a key is generated beside
    #: the database file on first start when unset.
    encryption_key_file: Path | None = None
    #: How long a request waits for the database before answering 503.
    timeout_s: float = Field(default=2.5, gt=0)


class ServerSettings(BaseModel):
    """How ``serve`` runs: processes, and which reverse proxies it believes."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: Addresses of reverse proxies whose X-Forwarded-Proto/Host/For are honoured; "*" trusts any (only behind a
    #: proxy that overwrites them). Empty: the headers are ignored.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: Seconds in-flight requests get to finish after SIGTERM.
    graceful_shutdown_s: float = Field(default=20, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KETAMINE_CDS_", env_nested_delimiter="__", extra="forbid")
    cds: CdsSettings = Field(default_factory=CdsSettings)
    smart: SmartSettings = Field(default_factory=SmartSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init values).
        return env_settings, init_settings


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """For an unknown key, the known key it most resembles (a typo in a hand-edited TOML file is the usual cause)."""
    import difflib

    model: Any = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        inner = getattr(annotation, "__args__", (annotation,))[0] if annotation is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            if isinstance(part, int):
                continue
            return ""
        model = inner
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_settings(path: Path | None) -> Settings:
    settings = _validated(_read_toml(path) if path is not None else {}, path)
    _resolve_paths(settings, path.parent if path is not None else Path.cwd())
    _read_secret_files(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.__class__.__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc


def _validated(data: dict[str, Any], path: Path | None) -> Settings:
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        hint = _did_you_mean(first.get("loc", ())) if first.get("type") == "extra_forbidden" else ""
        raise SettingsError(f"{path or 'settings'}: {loc}: {first.get('msg')}{hint}") from exc


#: The settings that name files: a relative one is relative to the settings file (else the working directory).
_FILE_SETTINGS = (("cds", "feedback_db"), ("cds", "audit_salt_file"), ("cds", "audit_log"),
                  ("smart", "private_key_file"), ("storage", "database_url_file"),
                  ("storage", "encryption_key_file"), ("smart", "client_secret_file"))


def _resolve_paths(settings: Settings, base: Path) -> None:
    for client in settings.cds.clients:
        if client.jwks_file is not None and not client.jwks_file.is_absolute():
            client.jwks_file = base / client.jwks_file
    for section, name in _FILE_SETTINGS:
        group = getattr(settings, section)
        value = getattr(group, name)
        if value is not None and not value.is_absolute():
            setattr(group, name, base / value)


def _read_secret_file(path: Path, key: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{key} {path}: cannot read ({exc.__class__.__name__})") from exc
    if not value:
        raise SettingsError(f"{key} {path}: the file is empty")
    return value


def _read_secret_files(settings: Settings) -> None:
    """``*_file`` keys: secrets kept out of the TOML file and the environment (container secrets, vault agents)."""
    if settings.storage.database_url_file is not None:
        settings.storage.database_url = _read_secret_file(settings.storage.database_url_file,
                                                          "storage.database_url_file")
    if settings.smart.client_secret_file is not None:
        if settings.smart.private_key_file is not None:
            raise SettingsError("smart: give client_secret_file or private_key_file, not both")
        settings.smart.client_secret = _read_secret_file(settings.smart.client_secret_file, "smart.client_secret_file")


def command(arguments: str) -> str:
    """A command as the operator types it: installed (the container, a package) or from a source checkout (the
    README's ``./dev run``). Every message and guide names both, in this one form."""
    return f"`ketamine-cds {arguments}` (from a source checkout: `./dev run {arguments}`)"


def database_url(settings: Settings) -> str:
    """The shared-state database: ``storage.database_url``, else the embedded SQLite file ``cds.feedback_db``."""
    return settings.storage.database_url or f"sqlite:///{settings.cds.feedback_db}"


def uses_postgresql(settings: Settings) -> bool:
    return database_url(settings).startswith(("postgresql:", "postgresql+", "postgres:"))


def encryption_key_path(settings: Settings) -> Path:
    """The Fernet key's file: ``storage.encryption_key_file``, else (SQLite only) beside the database file."""
    if settings.storage.encryption_key_file is not None:
        return settings.storage.encryption_key_file
    if uses_postgresql(settings):
        raise SettingsError("storage.encryption_key_file is required with PostgreSQL: SMART tokens are encrypted at "
                            f"rest with it; create one with {command('generate-key FILE')} and name it there")
    return settings.cds.feedback_db.with_name("ketamine-cds-storage.key")


def legacy_audit_salt_path(settings: Settings) -> Path:
    """Where releases before the shared store kept a generated salt: ``audit_salt_file``, else beside the feedback
    database. A salt found there is kept, so old and new audit lines hash a patient alike."""
    return settings.cds.audit_salt_file or settings.cds.feedback_db.with_name("ketamine-cds-audit-salt")


def audit_salt(settings: Settings, stored: Callable[[], str]) -> str:
    """The configured salt, else the one in the salt file, else the shared store's (random, created once, the same
    on every replica: ``stored``).

    A public default salt would let anyone with the audit log test patient ids against its hashes.
    """
    if settings.cds.audit_salt:
        return settings.cds.audit_salt
    path = legacy_audit_salt_path(settings)
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        raise SettingsError(f"cds.audit_salt_file {path}: cannot read ({exc.__class__.__name__})") from exc
    return existing or stored()

"""The application factory: one ASGI app serving the CDS Hooks service (and the SMART app) from settings."""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc.jwk import ECKey, RSAKey
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cds_hooks import (
    CdsError,
    CdsOptions,
    IssueType,
    JwksCache,
    JwtVerifier,
    TrustedClient,
    build_router,
    handle_cds_error,
)
from cds_hooks.audit import add_observer
from cds_hooks.errors import operation_outcome
from cds_hooks.fhir_servers import FhirServerCheck, FhirServerPolicy, origin, parse_networks
from eligibility import Policy, load_policy
from fhir_mapping import CodeSets
from fhir_mapping.outbound import http_client
from smart_app import ClientCredentials, SmartOptions, SmartProblem, Store, csp, problem_handler
from smart_app import build_router as build_smart_router
from smart_app.routes import problem_page
from storage import (
    SchemaBehind,
    Sealer,
    Storage,
    StorageError,
    StorageUnavailable,
    load_or_create_key,
    open_storage,
)

from . import metrics
from .health import build_health_router
from .safe_errors import SafeErrors
from .settings import (
    Settings,
    SettingsError,
    audit_salt,
    command,
    database_url,
    encryption_key_path,
    load_settings,
    uses_postgresql,
)

log = logging.getLogger("ketamine_cds")
#: The issue code of an HTTP error the router raises itself (no route, wrong method); any other is "processing".
_HTTP_ISSUES = {404: IssueType.NOT_FOUND, 405: IssueType.NOT_SUPPORTED}


def trusted_clients(settings: Settings) -> list[TrustedClient]:
    clients = []
    for c in settings.cds.clients:
        if c.jwks_file is not None:
            # A file that is missing or not JSON is a mistake in the configuration: refused at start. Its keys are
            # read by the JWKS cache, again whenever the file changes, so a JWKS without usable keys makes /readyz
            # say so (503) and readiness returns once the file is fixed, without a restart.
            try:
                json.loads(c.jwks_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"client {c.issuer}: cannot read jwks_file {c.jwks_file} "
                                    f"({exc.__class__.__name__})") from exc
            except ValueError as exc:
                raise SettingsError(f"client {c.issuer}: jwks_file {c.jwks_file} is not JSON ({exc})") from exc
            clients.append(TrustedClient(c.issuer, jwks_file=c.jwks_file, tenant=c.tenant))
        else:
            clients.append(TrustedClient(c.issuer, jwks_url=c.jwks_url, tenant=c.tenant))
    return clients


def fhir_server_check(settings: Settings) -> FhirServerCheck:
    """Each trusted client's ``fhirServer`` policy: its origins, and the non-public networks it may resolve to."""
    return FhirServerCheck({c.issuer: FhirServerPolicy(frozenset(origin(o) for o in c.fhir_servers),
                                                       parse_networks(c.fhir_server_networks))
                            for c in settings.cds.clients})


def prepare_audit_log(path: Path | None) -> None:
    """Creates the audit log's directory (as the database file's is) and checks that the file can be appended to.

    ``serve`` calls it once before any worker starts, so a path that cannot be written is one line and exit 2
    rather than a traceback in every worker.
    """
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cds.audit_log {path}: cannot create its directory {path.parent} "
                            f"({exc.strerror or exc.__class__.__name__})") from exc
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise SettingsError(f"cds.audit_log {path}: cannot be written ({exc.strerror or exc.__class__.__name__})"
                            ) from exc


def _configure_audit(path: Path | None) -> None:
    prepare_audit_log(path)
    logger = logging.getLogger("ketamine_cds.audit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def smart_credentials(settings: Settings) -> ClientCredentials:
    smart = settings.smart
    if smart.private_key_file is None:
        return ClientCredentials(smart.client_id, client_secret=smart.client_secret)
    try:
        pem = smart.private_key_file.read_bytes()
    except OSError as exc:
        raise SettingsError(f"smart.private_key_file {smart.private_key_file}: cannot read") from exc
    key_cls = RSAKey if smart.alg == "RS384" else ECKey
    try:
        key = key_cls.import_key(pem)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"smart.private_key_file: not a {smart.alg} private key") from exc
    key = key_cls.import_key(pem, parameters={"kid": key.thumbprint()})
    return ClientCredentials(smart.client_id, private_key=key, alg=smart.alg)


def open_shared_storage(settings: Settings, *, migrate: bool | None = None, check_schema: bool = True) -> Storage:
    """The shared-state store the settings name. SQLite is created and upgraded in place; PostgreSQL must have been
    migrated (``ketamine-cds migrate``) and needs the encryption key file."""
    key_path = encryption_key_path(settings)
    if uses_postgresql(settings) and not key_path.exists():
        raise SettingsError(f"storage.encryption_key_file {key_path} does not exist: create it with "
                            f"{command(f'generate-key {key_path}')} and give the same file to every replica")
    try:
        key = load_or_create_key(key_path, create=not uses_postgresql(settings))
        return open_storage(database_url(settings), Sealer(key), timeout_s=settings.storage.timeout_s,
                            migrate=migrate, check_schema=check_schema)
    except SchemaBehind as exc:
        raise SettingsError(f"the database schema is at revision {exc.current or 'none'}, this release needs "
                            f"{exc.head}: run {command('migrate --config FILE')} first") from exc
    except StorageError as exc:
        raise SettingsError(str(exc)) from exc


def _slash_redirect(app: FastAPI, request: Request, public_base_url: str) -> Response | None:
    """A path that names a route but for a trailing slash ("/cds-services/", "/sandbox"): a 307 to that route at
    ``public_base_url``, never at the request's Host header or X-Forwarded-Host (else None: a plain 404)."""
    path = request.url.path
    if path == "/":
        return None
    other = (path.rstrip("/") or "/") if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes):
        return None
    query = request.url.query
    return RedirectResponse(public_base_url + other + (f"?{query}" if query else ""), status_code=307)


def cds_options(settings: Settings, *, policy: Policy, storage: Storage, verifier: JwtVerifier | None,
                audit_salt: str, http: httpx.AsyncClient | None, today: Callable[[], dt.date],
                now: Callable[[], dt.datetime]) -> CdsOptions:
    """The CDS service's options from the settings: every number and switch is the settings' (``CdsOptions`` has no
    defaults of its own); the rest are the running app's parts."""
    cds, sessions = settings.cds, settings.sessions
    return CdsOptions(
        public_base_url=cds.public_base_url,
        policy=policy,
        storage=storage,
        verifier=verifier,
        discovery_requires_auth=cds.discovery_requires_auth,
        max_body_bytes=cds.max_body_bytes,
        fhir_budget_s=cds.fhir_budget_s,
        smart_launch_url=cds.public_base_url + "/smart/launch",
        audit_salt=audit_salt,
        repeat_window_s=cds.repeat_window_s,
        now=now,
        session_codes=frozenset(sessions.appointment_codes),
        display_tz=ZoneInfo(sessions.display_timezone) if sessions.display_timezone else None,
        max_session_appointments=sessions.max_appointments,
        max_cards=cds.max_cards,
        fhir_servers=fhir_server_check(settings),
        fhir_max_response_bytes=cds.fhir_max_response_bytes,
        fhir_max_total_bytes=cds.fhir_max_total_bytes,
        http=http,
        today=today,
    )


def smart_options(settings: Settings, *, storage: Storage, http: httpx.AsyncClient,
                  today: Callable[[], dt.date]) -> SmartOptions:
    """The SMART app's options from the settings: every number and switch is the settings' (``SmartOptions`` has no
    defaults of its own); the rest are the running app's parts."""
    smart, base = settings.smart, settings.cds.public_base_url
    return SmartOptions(
        public_base_url=base,
        credentials=smart_credentials(settings),
        redirect_uri=smart.redirect_uri or base + "/smart/callback",
        allowed_issuers=smart.allowed_issuers,
        store=Store(storage, launch_ttl_s=smart.launch_ttl_s, login_ttl_s=smart.login_ttl_s,
                    max_pending_launches=smart.max_pending_launches),
        frame_ancestors=smart.frame_ancestors,
        default_iss=smart.default_iss,
        offline_access=smart.offline_access,
        policy=settings.cds.policy,
        fhir_budget_s=smart.fhir_budget_s,
        http=http,
        today=today,
    )


def app_from_environment() -> FastAPI:
    """The app ``serve`` runs in each worker (uvicorn's factory): settings from ``KETAMINE_CDS_CONFIG``."""
    config = os.environ.get("KETAMINE_CDS_CONFIG")
    settings = load_settings(Path(config) if config else None)
    return create_app(settings, insecure_no_auth=os.environ.get("KETAMINE_CDS_INSECURE_NO_AUTH") == "1")


def create_app(
    settings: Settings,
    *,
    insecure_no_auth: bool = False,
    http: httpx.AsyncClient | None = None,
    today: Callable[[], dt.date] | None = None,
    now: Callable[[], dt.datetime] | None = None,
    configure_logging: bool = True,
    sandbox: Any = None,
    on_startup: Sequence[Callable[[], Awaitable[Any]]] = (),
) -> FastAPI:
    """The service and the SMART app from settings; ``sandbox`` (an ASGI app) is mounted at /sandbox for the demo."""
    policy = load_policy(settings.cds.policy)
    CodeSets.load()  # code sets are static: load them before requests arrive
    storage = open_shared_storage(settings)
    try:
        salt = audit_salt(settings, lambda: storage.secret("audit_salt", lambda: secrets.token_hex(32)))
    except StorageUnavailable as exc:
        storage.close()
        raise SettingsError(f"the database did not answer: {exc}") from exc
    own_http = http is None
    client = http or http_client(timeout=settings.cds.fhir_budget_s)
    verifier = None if insecure_no_auth else JwtVerifier(trusted_clients(settings), JwksCache(client),
                                                         replay=storage,
                                                         max_lifetime_s=settings.cds.jwt_max_lifetime_s)
    if configure_logging:
        _configure_audit(settings.cds.audit_log)
    options = cds_options(settings, policy=policy, storage=storage, verifier=verifier, audit_salt=salt, http=client,
                          today=today or dt.date.today, now=now or (lambda: dt.datetime.now(dt.UTC)))

    smart = smart_options(settings, storage=storage, http=client, today=today or dt.date.today)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for step in on_startup:
            await step()
        yield
        if own_http:
            await client.aclose()
        await storage.aclose()

    add_observer(metrics.observe_audit)
    smart.on_launch = metrics.smart_launch
    app = FastAPI(title="ketamine-cds", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    # Starlette's own trailing-slash redirect builds its Location from the request's Host header, so a forged Host
    # made this service redirect a caller to any site; the 404 handler redirects instead (``_slash_redirect``).
    app.router.redirect_slashes = False
    app.state.storage = storage
    app.state.options = options
    app.state.smart = smart
    app.include_router(build_health_router(storage))
    app.include_router(build_router(options))
    app.include_router(build_smart_router(smart))
    if sandbox is not None:
        app.mount("/sandbox", sandbox)

    @app.middleware("http")
    async def smart_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/smart") and "content-security-policy" not in response.headers:
            # Redirects and JSON from the app get the same framing policy as its pages.
            response.headers["Content-Security-Policy"] = csp(settings.smart.frame_ancestors, "none")
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    app.middleware("http")(metrics.http_metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cds.cors_allow_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )

    app.add_exception_handler(CdsError, handle_cds_error)
    app.add_exception_handler(SmartProblem, problem_handler(smart))

    @app.exception_handler(StorageUnavailable)
    async def storage_down(request: Request, exc: StorageUnavailable) -> Response:
        # Reached from faces that do not translate it themselves (the SMART app): a 503, never a 500. A person in
        # the EHR's frame gets a page; a program gets an OperationOutcome.
        if request.url.path.startswith("/smart"):
            page = problem_page(smart, "The app is briefly unavailable",
                                "Its database did not answer. Try again in a moment; if it persists, tell IT.", 503)
            page.headers["Retry-After"] = "5"
            return page
        return JSONResponse(operation_outcome(IssueType.TRANSIENT, "shared state is unavailable; retry shortly"),
                            status_code=503, media_type="application/fhir+json", headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and (moved := _slash_redirect(app, request, settings.cds.public_base_url)):
            return moved
        code = _HTTP_ISSUES.get(exc.status_code, IssueType.PROCESSING)
        return JSONResponse(operation_outcome(code, str(exc.detail)), status_code=exc.status_code,
                            media_type="application/fhir+json")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(operation_outcome(IssueType.INVALID, "invalid request"), status_code=400,
                            media_type="application/fhir+json")

    # Outermost of our middleware: whatever fails below becomes a safe 500 (see safe_errors.py).
    app.add_middleware(SafeErrors)

    # Everything built so far lives as long as the process. Freezing it keeps the cyclic GC from walking it on
    # every collection that a large request body's allocations trigger (measured: a 0.5 MB prefetch took 17 ms
    # to parse inside the service against 3 ms alone).
    gc.freeze()
    return app

"""Launch records and logins, kept in the shared store (sealed: tokens and PKCE verifiers are encrypted at rest).
The browser holds only opaque ids: a per-browser binding cookie, and a login id in the app's URL; tokens never
leave the server, and any replica can complete a launch another one started.

A *login* is what a completed launch leaves: the tokens and launch context one user's review works with (not named
after the web's usual word: in this product that word is clinical, an esketamine treatment session, as the label and
REMS use it).

Binding every launch and login to the browser cookie (not storing them in it) lets several launches in one browser
(two patients in two EHR tabs) live side by side without disturbing each other.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from storage import Sealed, Storage

from .oauth import SmartConfiguration


def _config_payload(config: SmartConfiguration) -> dict[str, Any]:
    payload = dataclasses.asdict(config)
    payload["capabilities"] = sorted(config.capabilities)
    payload["code_challenge_methods"] = list(config.code_challenge_methods)
    return payload


def _config(payload: dict[str, Any]) -> SmartConfiguration:
    return SmartConfiguration(
        issuer=payload["issuer"], authorization_endpoint=payload["authorization_endpoint"],
        token_endpoint=payload["token_endpoint"], jwks_uri=payload["jwks_uri"],
        capabilities=frozenset(payload["capabilities"]),
        code_challenge_methods=tuple(payload["code_challenge_methods"]))


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    state: str
    browser: str
    iss: str
    launch: str | None
    verifier: str
    nonce: str
    scope: str
    config: SmartConfiguration
    created: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Login:
    id: str
    browser: str  # the SHA-256 of the browser-binding cookie (see storage.browser_digest)
    iss: str
    config: SmartConfiguration
    access_token: str
    expires_at: float
    refresh_token: str | None
    scope: str
    patient: str | None
    encounter: str | None
    fhir_context: list[dict[str, Any]]
    need_patient_banner: bool
    smart_style_url: str | None
    intent: str | None
    tenant: str | None
    app_context: dict[str, Any]
    id_claims: dict[str, Any]
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.time)
    refreshed: int = 0


def _launch_payload(record: LaunchRecord) -> dict[str, Any]:
    return {"iss": record.iss, "launch": record.launch, "verifier": record.verifier, "nonce": record.nonce,
            "scope": record.scope, "config": _config_payload(record.config)}


def _launch(state: str, stored: Sealed) -> LaunchRecord:
    p = stored.payload
    return LaunchRecord(state, stored.browser_digest, p["iss"], p["launch"], p["verifier"], p["nonce"], p["scope"],
                        _config(p["config"]), stored.created)


def _login_payload(login: Login) -> dict[str, Any]:
    # The payload's keys are the fields' names: stored rows written before a rename must still open, so a field is
    # renamed only with a reader for its old name.
    payload = {f.name: getattr(login, f.name) for f in dataclasses.fields(Login)
               if f.name not in ("id", "browser", "config", "created")}
    payload["config"] = _config_payload(login.config)
    return payload


def _login(login_id: str, stored: Sealed) -> Login:
    p = dict(stored.payload)
    config = _config(p.pop("config"))
    return Login(id=login_id, browser=stored.browser_digest, config=config, created=stored.created, **p)


class Store:
    """The SMART face's view of the shared store: typed launch records and logins."""

    def __init__(self, storage: Storage, *, launch_ttl_s: float, login_ttl_s: float, max_pending_launches: int) -> None:
        self.storage = storage
        self.launch_ttl_s = launch_ttl_s
        self.login_ttl_s = login_ttl_s
        self.max_pending_launches = max_pending_launches

    async def add_launch(self, record: LaunchRecord) -> None:
        """Store a launch; raises ``storage.TooManyPending`` when ``max_pending_launches`` are already pending."""
        await self.storage.add_launch(record.state, record.browser, _launch_payload(record), record.created,
                                      self.launch_ttl_s, self.max_pending_launches)

    async def peek_launch(self, state: str) -> LaunchRecord | None:
        """The launch record, still unspent (its ``browser`` is the cookie's digest: compare with
        ``storage.same_browser``)."""
        stored = await self.storage.peek_launch(state)
        return None if stored is None else _launch(state, stored)

    async def take_launch(self, state: str, browser: str) -> LaunchRecord | None:
        """Spend a launch, once, and only from the browser that started it (a leaked callback URL used in another
        browser leaves the real user's launch intact)."""
        stored = await self.storage.take_launch(state, browser)
        return None if stored is None else _launch(state, stored)

    async def save_login(self, login: Login) -> None:
        await self.storage.put_login(login.id, login.browser, _login_payload(login), login.created, self.login_ttl_s)

    async def login(self, login_id: str, browser: str | None) -> Login | None:
        """The login, if it exists, belongs to this browser (the binding cookie) and is younger than its TTL."""
        stored = await self.storage.login(login_id, browser, self.login_ttl_s)
        return None if stored is None else _login(login_id, stored)

    async def end_login(self, login_id: str) -> None:
        await self.storage.end_login(login_id)


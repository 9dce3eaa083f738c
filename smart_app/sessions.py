"""Server-side launch records and sessions. The browser holds only opaque ids: a per-browser binding cookie, and a
session id in the app's URL; tokens never leave the server.

Binding every launch and session to the browser cookie (not storing them in it) lets several launches in one browser
(two patients in two EHR tabs) live side by side without disturbing each other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .oauth import SmartConfiguration


@dataclass
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


@dataclass
class Session:
    id: str
    browser: str
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


class Store:
    def __init__(self, launch_ttl_s: float = 600, session_ttl_s: float = 8 * 3600, limit: int = 10_000) -> None:
        self.launch_ttl_s = launch_ttl_s
        self.session_ttl_s = session_ttl_s
        self.limit = limit
        self.launches: dict[str, LaunchRecord] = {}
        self.sessions: dict[str, Session] = {}

    def _prune(self) -> None:
        now = time.time()
        if len(self.launches) > self.limit:
            self.launches = {k: v for k, v in self.launches.items() if now - v.created < self.launch_ttl_s}
        if len(self.sessions) > self.limit:
            self.sessions = {k: v for k, v in self.sessions.items() if now - v.created < self.session_ttl_s}

    def add_launch(self, record: LaunchRecord) -> None:
        self._prune()
        self.launches[record.state] = record

    def peek_launch(self, state: str) -> LaunchRecord | None:
        """The launch record, still unspent: the callback checks the browser before it spends the launch."""
        return self.launches.get(state)

    def take_launch(self, state: str, browser: str) -> LaunchRecord | None:
        """Spend a launch, once, and only from the browser that started it (a leaked callback URL used in another
        browser leaves the real user's launch intact)."""
        record = self.launches.get(state)
        if record is None or not secrets.compare_digest(record.browser, browser):
            return None
        return self.launches.pop(state, None)

    def add_session(self, session: Session) -> None:
        self._prune()
        self.sessions[session.id] = session

    def session(self, sid: str, browser: str | None) -> Session | None:
        session = self.sessions.get(sid)
        if session is None or browser is None or not secrets.compare_digest(session.browser, browser):
            return None
        if time.time() - session.created > self.session_ttl_s:
            self.sessions.pop(sid, None)
            return None
        return session

    def end(self, sid: str) -> None:
        self.sessions.pop(sid, None)

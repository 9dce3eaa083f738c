"""Issued cards and the feedback on them, in SQLite.

Feedback is idempotent: the same card, outcome and timestamp are stored once however often (or however
concurrently) they are posted. Issued cards are recorded so that feedback can be matched to what was shown.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UnknownCard
from .models import CardKind, Indicator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued_card (
    card_uuid TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    kind TEXT NOT NULL,
    indicator TEXT NOT NULL,
    suggestion_uuids TEXT NOT NULL,
    issued_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    issuer TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    service TEXT NOT NULL,
    hook_instance TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    accepted_suggestions TEXT NOT NULL,
    issuer TEXT,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (card_uuid, outcome, outcome_timestamp)
);
"""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service: str
    hook_instance: str
    kind: CardKind
    indicator: Indicator
    suggestion_uuids: tuple[str, ...]
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    override_code: str | None
    override_display: str | None
    user_comment: str | None
    accepted_suggestions: tuple[str, ...]


class FeedbackStore:
    """A small SQLite store. Writes run in a worker thread so they never block the event loop."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(issued_card)")}
        if "issuer" not in columns:  # a database from before cards were bound to their client
            self._conn.execute("ALTER TABLE issued_card ADD COLUMN issuer TEXT")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def _run(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> int:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                cur.executemany(sql, list(rows))
                cur.execute("COMMIT")
            except sqlite3.Error:
                cur.execute("ROLLBACK")
                raise
            return cur.rowcount

    async def record_cards(self, cards: list[IssuedCard]) -> None:
        if not cards:
            return
        await asyncio.to_thread(
            self._run,
            "INSERT OR IGNORE INTO issued_card (card_uuid, service, hook_instance, kind, indicator, "
            "suggestion_uuids, issuer) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(c.card_uuid, c.service, c.hook_instance, c.kind, c.indicator, json.dumps(list(c.suggestion_uuids)),
              c.issuer) for c in cards],
        )

    async def record_feedback(self, service: str, issuer: str | None, items: list[FeedbackRecord]) -> None:
        """Store feedback on cards this service issued to this client; raises :class:`UnknownCard` (and stores
        nothing) when any item names another card."""
        def write() -> None:
            rows = []
            with self._lock:
                issued = {uuid: (hook, svc, iss) for uuid, hook, svc, iss in self._conn.execute(
                    f"SELECT card_uuid, hook_instance, service, issuer FROM issued_card WHERE card_uuid IN "  # noqa: S608 - placeholders
                    f"({','.join('?' * len(items))})", [i.card_uuid for i in items]).fetchall()}
            for i in items:
                known = issued.get(i.card_uuid)
                if known is None or known[1] != service or known[2] != issuer:
                    raise UnknownCard(i.card_uuid)
            hooks = {uuid: v[0] for uuid, v in issued.items()}
            for i in items:
                rows.append((i.card_uuid, i.outcome, i.outcome_timestamp, service, hooks.get(i.card_uuid),
                             i.override_code, i.override_display, i.user_comment,
                             json.dumps(list(i.accepted_suggestions)), issuer))
            self._run(
                "INSERT OR IGNORE INTO feedback (card_uuid, outcome, outcome_timestamp, service, hook_instance, "
                "override_code, override_display, user_comment, accepted_suggestions, issuer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

        await asyncio.to_thread(write)

    def report(self, displays: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Accept / override counts by card kind and override reason (a code without display shown by ``displays``)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT COALESCE(c.kind, 'unknown card') AS kind, f.outcome, "
                "COALESCE(f.override_display, f.override_code, '') AS reason, COUNT(*) "
                "FROM feedback f LEFT JOIN issued_card c ON c.card_uuid = f.card_uuid "
                "GROUP BY kind, f.outcome, reason ORDER BY kind, f.outcome, COUNT(*) DESC").fetchall()
            issued = dict(self._conn.execute("SELECT kind, COUNT(*) FROM issued_card GROUP BY kind").fetchall())
        displays = displays or {}
        return [{"kind": k, "outcome": o, "reason": displays.get(r, r), "count": n, "issued": issued.get(k, 0)}
                for k, o, r, n in rows]

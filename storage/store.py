"""The store: every method is a short transaction run in a worker thread, bounded by a timeout, so a slow or absent
database becomes :class:`StorageUnavailable` (a 503 at the edge) and never a hang or a 500."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import schema as t
from .errors import CardNotIssued, SchemaBehind, StorageError, StorageUnavailable, TooManyPending
from .records import FeedbackRecord, IssuedCard, storable
from .sealing import Sealer

_T = TypeVar("_T")
_MIGRATIONS = Path(__file__).parent / "migrations"


def browser_digest(browser: str) -> str:
    """What is stored of the browser-binding cookie: its SHA-256, so the table alone cannot impersonate a browser."""
    return hashlib.sha256(browser.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Sealed:
    """A stored launch or login: its payload (opened), the browser it is bound to, when it was created."""

    payload: dict[str, Any]
    browser_digest: str
    created: float

    def belongs_to(self, browser: str | None) -> bool:
        return same_browser(self.browser_digest, browser)


def same_browser(digest: str, browser: str | None) -> bool:
    """Whether the browser-binding cookie ``browser`` is the one ``digest`` was stored for (constant time)."""
    return browser is not None and secrets.compare_digest(digest, browser_digest(browser))


def _alembic(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, this release's head revision)."""
    head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    assert head is not None
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), head


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to head; returns (revision before, revision after)."""
    before, head = schema_status(engine)
    if before != head:
        # Alembic narrates each step at INFO; the caller reports the upgrade in one line of its own.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # A migration may rewrite a table: the per-request statement timeout does not apply to it.
                conn.execute(sa.text("SET statement_timeout = 0"))
            command.upgrade(_alembic(conn), "head")
    return before, head


def _engine(url: str, timeout_s: float) -> Engine:
    if url.startswith("postgres://"):  # the spelling Heroku-style URLs use; SQLAlchemy knows only "postgresql"
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError("storage.database_url is not a database URL") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed.set(drivername="sqlite+pysqlite"), connect_args={"timeout": timeout_s})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        # Every call is one idempotent statement (or a few, each safe alone: INSERT … ON CONFLICT, DELETE …
        # RETURNING), so autocommit spares the BEGIN and COMMIT round trips. No pre-ping either: a connection lost
        # to a database restart fails one call (503), SQLAlchemy then invalidates the pool and the next call
        # reconnects.
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT", pool_size=10,
            max_overflow=10, pool_timeout=timeout_s, connect_args=_postgresql_limits(timeout_s))
    raise StorageError(f"unsupported database URL scheme {parsed.drivername!r} (use sqlite:/// or postgresql://)")


def _postgresql_limits(timeout_s: float) -> dict[str, Any]:
    """The connection's own limits, so that a database that is slow or gone ends a call near ``timeout_s``.

    - ``connect_timeout``: libpq's, in whole seconds and at least 2 (libpq and psycopg raise anything smaller to 2);
      the request's own deadline (``Storage._run``) ends a call sooner, the connection attempt ends by itself.
    - ``statement_timeout`` at 90 % of ``timeout_s``: a statement the server holds (a lock, a slow disk) is cancelled
      by the server a little before the request gives up, so the request gets a clean error and the connection
      stays usable, instead of a client-side cancel that must reach a server that may not answer.
    """
    statement_ms = max(1, int(timeout_s * 900))
    return {"connect_timeout": max(2, math.ceil(timeout_s)), "options": f"-c statement_timeout={statement_ms}"}


def _async_engine(engine: Engine, timeout_s: float) -> AsyncEngine | None:
    """PostgreSQL's engine for the request path: psycopg's asyncio driver, so a call waits on the socket in the event
    loop instead of hopping to a worker thread (the hop cost as much as the query on loopback)."""
    if engine.dialect.name != "postgresql":
        return None
    return create_async_engine(engine.url.set(drivername="postgresql+psycopg_async"), isolation_level="AUTOCOMMIT",
                               pool_size=10, max_overflow=10, pool_timeout=timeout_s,
                               connect_args=_postgresql_limits(timeout_s))


def open_storage(url: str, sealer: Sealer, *, timeout_s: float = 2.5, migrate: bool | None = None,
                 check_schema: bool = True) -> Storage:
    """The store at ``url``. The embedded SQLite database is created and upgraded in place (``migrate`` defaults to
    True there); PostgreSQL is upgraded only by ``ketamine-cds migrate``, and a schema behind this release raises
    :class:`SchemaBehind`."""
    engine = _engine(url, timeout_s)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    try:
        if migrate:
            upgrade_schema(engine)
        elif check_schema:
            current, head = schema_status(engine)
            if current != head:
                raise SchemaBehind(f"the database schema is at revision {current or 'none'}, this release needs "
                                   f"{head}: run `ketamine-cds migrate --config FILE` first", current, head)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise StorageUnavailable(f"the database did not answer ({exc.__class__.__name__})") from exc
    except BaseException:
        engine.dispose()
        raise
    return Storage(engine, sealer, timeout_s=timeout_s, async_engine=_async_engine(engine, timeout_s))


def _now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Storage:
    """All shared state. Safe to share between coroutines, threads, processes and replicas."""

    def __init__(self, engine: Engine, sealer: Sealer, *, timeout_s: float = 2.5,
                 clock: Callable[[], float] = time.time, async_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self._async_engine = async_engine
        self.dialect = engine.dialect.name
        self._sealer = sealer
        self._timeout_s = timeout_s
        self._clock = clock
        self._last_prune: dict[str, float] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()
        # The embedded SQLite file is local: a short write costs about what a hop to a worker thread costs (both
        # about 0.3 ms, measured by bench/scale.py), so it runs inline, bounded by the driver's busy timeout
        # (timeout_s). PostgreSQL runs on its asyncio engine when there is one, else in worker threads.
        self._inline = self.dialect == "sqlite"
        # The statements of the per-request calls, built once: building and cache-keying a statement costs as much as
        # running it on SQLite.
        self._claim_jti = self._insert(t.jwt_replay).on_conflict_do_nothing().returning(t.jwt_replay.c.jti)
        self._issue_cards = self._insert(t.issued_card).on_conflict_do_nothing()
        self._shown_since = sa.select(t.shown_card.c.digest).where(
            t.shown_card.c.digest.in_(sa.bindparam("digests", expanding=True)),
            t.shown_card.c.expires_at > sa.bindparam("now"))

    def close(self) -> None:
        self.engine.dispose()

    async def aclose(self) -> None:
        """Close every connection (the asyncio engine's must be closed on the event loop that opened them)."""
        if self._abandoned:  # attempts abandoned at their deadline, still cleaning up (bounded by the driver)
            await asyncio.wait(set(self._abandoned), timeout=15)
        if self._async_engine is not None:
            await self._async_engine.dispose()
        self.engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def _run(self, work: Callable[[Connection], _T]) -> _T:
        def transaction() -> _T:
            with self.engine.begin() as conn:
                return work(conn)
        try:
            if self._inline:
                return transaction()
            if self._async_engine is not None:
                return await self._within_deadline(self._async_engine, work)
            return await asyncio.wait_for(asyncio.to_thread(transaction), self._timeout_s)
        except (TimeoutError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StorageUnavailable(f"the database did not answer ({exc.__class__.__name__})") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise StorageUnavailable("the database connection was lost") from exc
            raise

    async def _within_deadline(self, engine: AsyncEngine, work: Callable[[Connection], _T]) -> _T:
        """``work`` on the asyncio engine, answered within ``timeout_s`` whatever the database does.

        Cancelling a psycopg query in place is not enough: on cancellation the driver first sends the server a
        cancel request and waits for the query to end (up to 5 s each), so the first call after a database hang took
        ``timeout_s`` + 10 s. The attempt runs as its own task instead; at the deadline the call raises at once and the
        abandoned attempt is cancelled and finishes its clean-up in the background (kept in ``_abandoned`` until it
        has, and awaited by :meth:`aclose`)."""
        async def attempt() -> _T:
            async with engine.begin() as conn:
                return await conn.run_sync(work)

        task = asyncio.ensure_future(attempt())
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout_s)
        except asyncio.CancelledError:  # the request itself went away: so does its attempt
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise TimeoutError
        return task.result()

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # no one's any more (the call already answered): retrieved so asyncio does not log it

    def _prune_due(self, table: sa.Table, now: float) -> bool:
        # Expired rows of each table are deleted at most once a minute per process: cheap, and no scheduler to run.
        # One clock per table: the replay store, written on every call, must not use up the others' turns.
        if now - self._last_prune.get(table.name, 0.0) < 60:
            return False
        self._last_prune[table.name] = now
        return True

    async def ping(self) -> None:
        """Raises StorageUnavailable unless the database answers a trivial query."""
        await self._run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    # -- issued cards and feedback ----------------------------------------------------------------------------
    async def record_cards(self, cards: Iterable[IssuedCard]) -> None:
        issued_at = _now_text()
        rows = [{"card_uuid": c.card_uuid, "service": c.service, "hook_instance": c.hook_instance, "kind": c.kind,
                 "indicator": c.indicator, "suggestion_uuids": json.dumps(list(c.suggestion_uuids)),
                 "issued_at": issued_at, "issuer": c.issuer} for c in cards]
        if rows:
            await self._run(lambda conn: conn.execute(self._issue_cards, rows))

    async def record_feedback(self, service: str, issuer: str | None, items: list[FeedbackRecord]) -> int:
        """Store feedback on cards this service issued to this client, each (card, outcome, time) once; raises
        :class:`CardNotIssued` (and stores nothing) when any item names another card. Returns the rows added."""
        def write(conn: Connection) -> int:
            uuids = sorted({i.card_uuid for i in items})
            issued = {row.card_uuid: row for row in conn.execute(
                sa.select(t.issued_card.c.card_uuid, t.issued_card.c.hook_instance, t.issued_card.c.service,
                          t.issued_card.c.issuer).where(t.issued_card.c.card_uuid.in_(uuids)))}
            for i in items:
                known = issued.get(i.card_uuid)
                if known is None or known.service != service or known.issuer != issuer:
                    raise CardNotIssued(i.card_uuid)
            received = _now_text()
            rows = [{"card_uuid": i.card_uuid, "outcome": i.outcome, "outcome_timestamp": i.outcome_timestamp,
                     "service": service, "hook_instance": issued[i.card_uuid].hook_instance,
                     "override_code": i.override_code, "override_display": i.override_display,
                     "user_comment": i.user_comment, "accepted_suggestions": json.dumps(list(i.accepted_suggestions)),
                     "issuer": issuer, "received_at": received} for i in items]
            if not rows:
                return 0
            # RETURNING, not rowcount: the drivers disagree on rowcount after ON CONFLICT DO NOTHING.
            statement = self._insert(t.feedback).on_conflict_do_nothing().returning(t.feedback.c.card_uuid)
            return len(conn.execute(statement, rows).all())
        return await self._run(write)

    def report(self, displays: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Accept / override counts by card kind and override reason (a bare code shown by ``displays``)."""
        f, c = t.feedback, t.issued_card
        kind = sa.func.coalesce(c.c.kind, "unknown card").label("kind")
        reason = sa.func.coalesce(f.c.override_display, f.c.override_code, "").label("reason")
        count = sa.func.count().label("n")
        query = (sa.select(kind, f.c.outcome, reason, count).select_from(f.outerjoin(c, c.c.card_uuid == f.c.card_uuid))
                 .group_by(kind, f.c.outcome, reason).order_by(kind, f.c.outcome, count.desc()))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            issued = dict(conn.execute(sa.select(c.c.kind, sa.func.count()).group_by(c.c.kind)).tuples().all())
        displays = displays or {}
        return [{"kind": k, "outcome": o, "reason": displays.get(r, r), "count": n, "issued": issued.get(k, 0)}
                for k, o, r, n in rows]

    # -- JWT replay ---------------------------------------------------------------------------------------------
    async def first_use(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time (issuer, jti) is seen before ``expires_at``; False for a replay, on any replica.

        A ``jti`` the store cannot keep (over its column's size, a NUL, a lone surrogate) is False: a token whose
        single use cannot be recorded is refused, never a database error."""
        if not (storable(jti, t.JTI_MAX) and storable(issuer, t.ISSUER_MAX)):
            return False
        now = self._clock()
        prune = self._prune_due(t.jwt_replay, now)

        def claim(conn: Connection) -> bool:
            if prune:
                conn.execute(sa.delete(t.jwt_replay).where(t.jwt_replay.c.expires_at < now))
            added = conn.execute(self._claim_jti, {"issuer": issuer, "jti": jti, "expires_at": expires_at}).first()
            if added is not None:
                return True
            # Seen before: a first use again only when the earlier token has expired (and was not yet pruned).
            reused = conn.execute(sa.update(t.jwt_replay).where(
                t.jwt_replay.c.issuer == issuer, t.jwt_replay.c.jti == jti, t.jwt_replay.c.expires_at <= now,
            ).values(expires_at=expires_at).returning(t.jwt_replay.c.jti)).first()
            return reused is not None
        return await self._run(claim)

    # -- SMART launches and logins ------------------------------------------------------------------------------
    async def add_launch(self, state: str, browser: str, payload: dict[str, Any], created: float,
                         ttl_s: float, max_pending: int | None = None) -> None:
        """Store a launch until the callback spends it. With ``max_pending``, raises :class:`TooManyPending` (and
        stores nothing) when that many launches younger than ``ttl_s`` are already stored, on all replicas
        together: the launches an anonymous caller can leave behind are bounded. Concurrent launches on several
        replicas may pass the count together, so the bound holds to within the calls in flight; expired rows are
        pruned once a minute, so the table holds at most about twice ``max_pending``."""
        sealed = self._sealer.seal(payload)
        now = self._clock()
        prune = self._prune_due(t.smart_launch, now)
        launch = t.smart_launch

        def add(conn: Connection) -> None:
            if prune:
                conn.execute(sa.delete(launch).where(launch.c.created < now - ttl_s))
            if max_pending is not None:
                pending = conn.execute(sa.select(sa.func.count()).select_from(launch)
                                       .where(launch.c.created >= now - ttl_s)).scalar_one()
                if pending >= max_pending:  # expired launches do not count: the cap lifts as they expire
                    raise TooManyPending(f"{pending} SMART launches are pending (at most {max_pending})")
            conn.execute(sa.insert(launch).values(state=state, browser_digest=browser_digest(browser),
                                                  created=created, sealed=sealed))
        await self._run(add)

    def _opened(self, row: Any) -> Sealed | None:
        payload = self._sealer.open(bytes(row.sealed))
        return None if payload is None else Sealed(payload, row.browser_digest, row.created)

    async def peek_launch(self, state: str) -> Sealed | None:
        """The launch, still unspent: the callback checks the browser before it spends it."""
        if not storable(state, t.SMART_KEY_MAX):
            return None
        row = await self._run(lambda conn: conn.execute(sa.select(t.smart_launch).where(
            t.smart_launch.c.state == state)).first())
        return None if row is None else self._opened(row)

    async def take_launch(self, state: str, browser: str) -> Sealed | None:
        """Spend a launch once, and only from the browser that started it (atomic across replicas)."""
        if not storable(state, t.SMART_KEY_MAX):
            return None
        row = await self._run(lambda conn: conn.execute(
            sa.delete(t.smart_launch).where(t.smart_launch.c.state == state,
                                            t.smart_launch.c.browser_digest == browser_digest(browser))
            .returning(t.smart_launch.c.sealed, t.smart_launch.c.browser_digest, t.smart_launch.c.created)).first())
        return None if row is None else self._opened(row)

    async def put_login(self, login_id: str, browser_digest_: str, payload: dict[str, Any], created: float,
                        ttl_s: float) -> None:
        """Insert or replace a login (a refresh replaces its tokens)."""
        sealed = self._sealer.seal(payload)
        now = self._clock()
        prune = self._prune_due(t.smart_login, now)

        def put(conn: Connection) -> None:
            if prune:
                conn.execute(sa.delete(t.smart_login).where(t.smart_login.c.created < now - ttl_s))
            statement = self._insert(t.smart_login).values(id=login_id, browser_digest=browser_digest_,
                                                            created=created, sealed=sealed)
            conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"sealed": sealed}))
        await self._run(put)

    async def login(self, login_id: str, browser: str | None, ttl_s: float) -> Sealed | None:
        """The login, if it exists, belongs to this browser and is younger than ``ttl_s``."""
        if browser is None or not storable(login_id, t.SMART_KEY_MAX):
            return None
        row = await self._run(lambda conn: conn.execute(sa.select(t.smart_login).where(
            t.smart_login.c.id == login_id)).first())
        if row is None or self._clock() - row.created > ttl_s:
            return None
        found = self._opened(row)
        return found if found is not None and found.belongs_to(browser) else None

    async def end_login(self, login_id: str) -> None:
        if not storable(login_id, t.SMART_KEY_MAX):
            return
        await self._run(lambda conn: conn.execute(sa.delete(t.smart_login).where(t.smart_login.c.id == login_id)))

    # -- cards already shown (order-select → order-sign) ---------------------------------------------------------
    async def remember_shown(self, digests: Iterable[str], window_s: float) -> None:
        now = self._clock()
        rows = [{"digest": d, "expires_at": now + window_s} for d in set(digests)]
        if not rows:
            return
        prune = self._prune_due(t.shown_card, now)

        def put(conn: Connection) -> None:
            if prune:
                conn.execute(sa.delete(t.shown_card).where(t.shown_card.c.expires_at < now))
            statement = self._insert(t.shown_card)
            conn.execute(statement.on_conflict_do_update(index_elements=["digest"],
                                                         set_={"expires_at": statement.excluded.expires_at}), rows)
        await self._run(put)

    async def recently_shown(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        now = self._clock()
        return await self._run(lambda conn: set(conn.execute(self._shown_since, {"digests": wanted, "now": now})
                                                .scalars()))

    # -- the service's own secrets ------------------------------------------------------------------------------
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret ``name``, created by ``make`` the first time (the same value on every replica)."""
        with self.engine.begin() as conn:
            conn.execute(self._insert(t.service_secret).on_conflict_do_nothing(),
                         {"name": name, "value": make()})
            value = conn.execute(sa.select(t.service_secret.c.value).where(t.service_secret.c.name == name)).scalar()
        assert isinstance(value, str)
        return value

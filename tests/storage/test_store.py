"""The shared-state store: the same specification on the embedded SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from storage import (
    CardNotIssued,
    FeedbackRecord,
    IssuedCard,
    SchemaBehind,
    Sealer,
    Storage,
    StorageError,
    TooManyPending,
    open_storage,
    schema_status,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    cluster = request.getfixturevalue("postgres")
    return str(cluster.create_database(f"t_{uuid.uuid4().hex[:12]}"))


@pytest.fixture
def key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
async def store(database_url: str, key: bytes) -> AsyncIterator[Storage]:
    opened = open_storage(database_url, Sealer(key), migrate=True)
    yield opened
    await opened.aclose()  # PostgreSQL's asyncio connections close on the loop that opened them


def _card(uuid_: str, service: str = "ketamine-order-sign", issuer: str | None = "https://ehr") -> IssuedCard:
    return IssuedCard(uuid_, service, "hook-1", "contraindicated", "critical", ("s1",), issuer)


def _feedback(uuid_: str, at: str = "2026-11-28T10:00:00Z") -> FeedbackRecord:
    return FeedbackRecord(uuid_, "overridden", at, "chart-data-incorrect", "Chart data is incorrect", None, ())


async def test_feedback_is_stored_once_however_often_it_is_posted(store: Storage) -> None:
    await store.record_cards([_card("c1")])
    added = await asyncio.gather(*[store.record_feedback("ketamine-order-sign", "https://ehr", [_feedback("c1")])
                                   for _ in range(8)])
    assert sum(added) == 1
    report = store.report()
    assert report == [{"kind": "contraindicated", "outcome": "overridden", "reason": "Chart data is incorrect",
                       "count": 1, "issued": 1}]


@pytest.mark.parametrize(("service", "issuer"), [("ketamine-order-select", "https://ehr"),
                                                 ("ketamine-order-sign", "https://other-ehr")])
async def test_feedback_on_a_card_not_issued_to_this_service_and_client_is_refused(
        store: Storage, service: str, issuer: str) -> None:
    await store.record_cards([_card("c1")])
    with pytest.raises(CardNotIssued):
        await store.record_feedback(service, issuer, [_feedback("c1")])
    with pytest.raises(CardNotIssued):  # one unknown card refuses the whole batch: nothing is half-stored
        await store.record_feedback("ketamine-order-sign", "https://ehr", [_feedback("c1"), _feedback("nope")])
    assert store.report() == []


async def test_a_jti_is_accepted_once_until_it_expires(store: Storage) -> None:
    far = 4_000_000_000.0
    results = await asyncio.gather(*[store.first_use("https://ehr", "jti-1", far) for _ in range(10)])
    assert results.count(True) == 1
    assert await store.first_use("https://other-ehr", "jti-1", far)  # jti is unique per issuer only
    assert await store.first_use("https://ehr", "old", 1.0)
    assert await store.first_use("https://ehr", "old", far)  # the earlier use has expired


async def test_a_launch_is_spent_once_and_only_by_its_browser(store: Storage) -> None:
    payload = {"verifier": "v" * 43, "iss": "https://ehr/fhir"}
    await store.add_launch("state-1", "browser-a", payload, 1000.0, ttl_s=600)
    peeked = await store.peek_launch("state-1")
    assert peeked is not None and peeked.payload == payload and peeked.belongs_to("browser-a")
    assert not peeked.belongs_to("browser-b")
    assert await store.take_launch("state-1", "browser-b") is None  # another browser leaves it intact
    taken = await asyncio.gather(*[store.take_launch("state-1", "browser-a") for _ in range(5)])
    assert [t is not None for t in taken].count(True) == 1


async def test_pending_launches_are_capped_across_the_store_and_the_cap_lifts_as_they_expire(
        store: Storage, key: bytes) -> None:
    now = [1_000_000.0]
    clocked = Storage(store.engine, Sealer(key), clock=lambda: now[0], async_engine=store._async_engine)
    for n in range(3):
        await clocked.add_launch(f"state-{n}", "browser", {}, created=now[0], ttl_s=600, max_pending=3)
    with pytest.raises(TooManyPending):
        await clocked.add_launch("state-3", "browser", {}, created=now[0], ttl_s=600, max_pending=3)
    assert await clocked.peek_launch("state-3") is None  # nothing stored over the cap
    assert await clocked.take_launch("state-0", "browser") is not None  # a completed launch frees its place
    await clocked.add_launch("state-4", "browser", {}, created=now[0], ttl_s=600, max_pending=3)
    now[0] += 601  # all expired: they no longer count, pruned or not
    await clocked.add_launch("state-5", "browser", {}, created=now[0], ttl_s=600, max_pending=1)
    with pytest.raises(TooManyPending):
        await clocked.add_launch("state-6", "browser", {}, created=now[0], ttl_s=600, max_pending=1)
    await clocked.add_launch("state-7", "browser", {}, created=now[0], ttl_s=600)  # no cap given: none applies


@pytest.mark.parametrize("hostile", ["a\x00b", "\x00", "s" * 101, "\ud800"])
async def test_a_launch_state_or_login_id_no_store_can_hold_is_unknown_not_a_database_error(
        store: Storage, hostile: str) -> None:
    # A callback's state and a review URL's login id are anyone's to write: PostgreSQL refused a NUL with DataError
    # (a 500 at /smart/callback?state=%00); now such a key is simply not found, on both stores.
    assert await store.peek_launch(hostile) is None
    assert await store.take_launch(hostile, "browser") is None
    assert await store.login(hostile, "browser", 3600) is None
    await store.end_login(hostile)


async def test_logins_are_sealed_bound_to_their_browser_and_expire(store: Storage, key: bytes) -> None:
    import time

    from storage import browser_digest

    now = time.time()
    await store.put_login("login-1", browser_digest("browser-a"), {"access_token": "secret-token-123"}, now, 3600)
    found = await store.login("login-1", "browser-a", 3600)
    assert found is not None and found.payload["access_token"] == "secret-token-123"
    assert await store.login("login-1", "browser-b", 3600) is None
    assert await store.login("login-1", None, 3600) is None
    await store.put_login("login-1", browser_digest("browser-a"), {"access_token": "refreshed"}, now, 3600)
    again = await store.login("login-1", "browser-a", 3600)
    assert again is not None and again.payload["access_token"] == "refreshed"
    with store.engine.connect() as conn:
        import sqlalchemy as sa
        raw = b"".join(bytes(r[0]) for r in conn.execute(sa.text("SELECT sealed FROM smart_session")))
    assert b"refreshed" not in raw and raw  # tokens are encrypted at rest
    other_key = Storage(store.engine, Sealer(Fernet.generate_key()), async_engine=store._async_engine)
    assert await other_key.login("login-1", "browser-a", 3600) is None  # a rotated key ends logins, no crash
    await store.put_login("old", browser_digest("browser-a"), {}, now - 7200, 3600)
    assert await store.login("old", "browser-a", 3600) is None
    await store.end_login("login-1")
    assert await store.login("login-1", "browser-a", 3600) is None


async def test_shown_cards_are_remembered_for_the_window_only(store: Storage) -> None:
    await store.remember_shown(["a", "b"], 60)
    await store.remember_shown(["c"], -1)  # already expired
    assert await store.recently_shown(["a", "c", "d"]) == {"a"}
    assert await store.recently_shown([]) == set()


async def test_a_secret_is_created_once_and_shared(store: Storage) -> None:
    first = store.secret("audit_salt", lambda: "one")
    assert store.secret("audit_salt", lambda: "two") == first == "one"


async def test_a_new_database_is_at_the_head_revision(store: Storage) -> None:
    current, head = schema_status(store.engine)
    assert current == head


def test_postgresql_is_never_migrated_behind_the_operators_back(postgres: Any, key: bytes) -> None:
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    with pytest.raises(SchemaBehind, match="ketamine-cds migrate"):
        open_storage(url, Sealer(key))
    open_storage(url, Sealer(key), migrate=True).close()
    open_storage(url, Sealer(key)).close()  # now current: opens


def test_a_feedback_database_from_before_migrations_is_adopted(tmp_path: Path, key: bytes) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the shape the service wrote itself before Alembic (no issuer column)
        db.executescript("""
            CREATE TABLE issued_card (card_uuid TEXT PRIMARY KEY, service TEXT NOT NULL, hook_instance TEXT NOT NULL,
              kind TEXT NOT NULL, indicator TEXT NOT NULL, suggestion_uuids TEXT NOT NULL, issued_at TEXT NOT NULL);
            CREATE TABLE feedback (card_uuid TEXT NOT NULL, outcome TEXT NOT NULL, outcome_timestamp TEXT NOT NULL,
              service TEXT NOT NULL, hook_instance TEXT, override_code TEXT, override_display TEXT, user_comment TEXT,
              accepted_suggestions TEXT NOT NULL, issuer TEXT, received_at TEXT NOT NULL,
              PRIMARY KEY (card_uuid, outcome, outcome_timestamp));
            INSERT INTO issued_card VALUES ('old-card', 'ketamine-order-sign', 'h', 'caution', 'warning', '[]', 'x');
            INSERT INTO feedback VALUES ('old-card', 'accepted', 't', 'ketamine-order-sign', 'h', NULL, NULL, NULL,
              '[]', NULL, 'x');
        """)
    store = open_storage(f"sqlite:///{path}", Sealer(key))
    try:
        assert store.report() == [{"kind": "caution", "outcome": "accepted", "reason": "", "count": 1, "issued": 1}]
    finally:
        store.close()


def test_a_database_that_does_not_answer_is_a_clear_error(key: bytes) -> None:
    from storage import StorageUnavailable

    from ..conftest import free_port

    with pytest.raises(StorageUnavailable):
        open_storage(f"postgresql://postgres@127.0.0.1:{free_port()}/x", Sealer(key), timeout_s=1)
    with pytest.raises(StorageError, match=r"not a database URL|unsupported"):
        open_storage("mysql://x/y", Sealer(key))


async def test_each_table_is_pruned_on_its_own_turn(store: Storage, key: bytes) -> None:
    # A replay check on every call must not use up the turn of the launches (and logins, shown cards).
    now = [100.0]
    clocked = Storage(store.engine, Sealer(key), clock=lambda: now[0], async_engine=store._async_engine)
    await clocked.add_launch("stale", "browser", {}, created=now[0] - 700, ttl_s=600)
    now[0] = 200.0
    assert await clocked.first_use("https://ehr", "jti-prune", 4_000_000_000.0)
    await clocked.add_launch("fresh", "browser", {}, created=now[0], ttl_s=600)
    assert await clocked.peek_launch("stale") is None
    assert await clocked.peek_launch("fresh") is not None


# -- a database that hangs (issue 21 item 5) -------------------------------------------------------------------------
def _through(url: str, cluster: Any, proxy: Any) -> str:
    return url.replace(f"127.0.0.1:{cluster.port}/", f"127.0.0.1:{proxy.port}/")


async def test_the_first_calls_after_the_database_hangs_answer_within_the_timeout(postgres: Any, key: bytes) -> None:
    from storage import StorageUnavailable

    from ..stalling_proxy import StallingProxy

    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    open_storage(url, Sealer(key), migrate=True).close()
    with StallingProxy(("127.0.0.1", postgres.port)) as proxy:
        store = open_storage(_through(url, postgres, proxy), Sealer(key), timeout_s=1.0)
        try:
            assert await store.first_use("https://ehr", "before", 4_000_000_000.0)  # a pooled connection
            proxy.stall()
            # The pooled connection's query gets no answer; the calls after it need a new connection, which the
            # hung host never completes: each is a StorageUnavailable within the timeout, never a hang.
            for n in range(3):
                started = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await store.first_use("https://ehr", f"during-{n}", 4_000_000_000.0)
                assert time.monotonic() - started < 1.5, n
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await store.ping()
            assert time.monotonic() - started < 1.5
            proxy.resume()
            deadline = time.monotonic() + 30
            while True:  # and the store recovers by itself
                try:
                    assert await store.first_use("https://ehr", "after", 4_000_000_000.0)
                    break
                except StorageUnavailable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
        finally:
            proxy.resume()
            await store.aclose()


async def test_a_statement_the_database_holds_is_cancelled_by_the_server_after_the_timeout(
        postgres: Any, key: bytes) -> None:
    import psycopg

    from storage import StorageUnavailable

    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    store = open_storage(url, Sealer(key), migrate=True, timeout_s=1.0)
    try:
        assert await store._run(lambda conn: conn.execute(sa.text("SHOW statement_timeout")).scalar()) == "900ms"
        with psycopg.connect(url) as blocker:  # another client holds the replay table locked
            blocker.execute("LOCK TABLE jwt_replay IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await store.first_use("https://ehr", "locked", 4_000_000_000.0)
            assert time.monotonic() - started < 1.5
            waiting = blocker.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            assert waiting.fetchone() == (0,)  # the server gave up the statement too: nothing left queued
            blocker.rollback()
        assert await store.first_use("https://ehr", "unlocked", 4_000_000_000.0)
    finally:
        await store.aclose()

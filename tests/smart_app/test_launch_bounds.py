"""``/smart/launch`` is anonymous, so what one GET may cost is bounded (issue 21 item 5): the EHR's configuration is
read once per issuer for a while (a failure only briefly), the ``launch`` value has a length limit, and the pending
launches all callers together may leave in the store are capped, with a clear 503 page over the cap.

The app runs in-process through httpx.ASGITransport; the EHR's SMART endpoints are an httpx.MockTransport that counts
the calls it gets (the sandbox EHR cannot be made to fail on demand)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from ketamine_cds.app import create_app
from ketamine_cds.settings import load_settings
from smart_app.discovery import SmartConfigurations
from smart_app.launches import MAX_LAUNCH_LENGTH
from smart_app.oauth import OAuthProblem, SmartConfiguration
from smart_app.routes import BROWSER_COOKIE
from storage import Sealer, open_storage
from storage.schema import smart_launch

from .fake_ehr import DISCOVERY, ISS, smart_configuration

pytestmark = pytest.mark.anyio

BASE = "http://app.test"


@dataclass
class Ehr:
    discovery_status: int = 200
    calls: Counter[str] = field(default_factory=Counter)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path] += 1
        if request.url.path == DISCOVERY:
            return httpx.Response(self.discovery_status, json=smart_configuration())
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "synthetic-token", "expires_in": 3600,
                                             "scope": "launch patient/*.rs", "patient": "kc-01"})
        return httpx.Response(404)


@dataclass
class App:
    client: httpx.AsyncClient
    ehr: Ehr
    app: Any

    async def launch(self, launch: str = "launch-1") -> httpx.Response:
        return await self.client.get("/smart/launch", params={"iss": ISS, "launch": launch})

    def pending(self) -> int:
        with self.app.state.storage.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(smart_launch)).scalar_one())


@asynccontextmanager
async def running(work: Path, database_url: str | None = None) -> AsyncIterator[App]:
    """The app with its shared state in the embedded SQLite file, or in ``database_url`` (PostgreSQL, migrated)."""
    storage = ""
    if database_url is not None:
        (work / "storage.key").write_bytes(Fernet.generate_key())
        await open_storage(database_url, Sealer((work / "storage.key").read_bytes()), migrate=True).aclose()
        storage = f'[storage]\ndatabase_url = "{database_url}"\nencryption_key_file = "storage.key"\n'
    (work / "k.toml").write_text(f'[cds]\npublic_base_url = "{BASE}"\nfeedback_db = "state.sqlite3"\n'
                                 f'[smart]\nallowed_issuers = ["{ISS}"]\nmax_pending_launches = 3\n{storage}')
    ehr = Ehr()
    http = httpx.AsyncClient(transport=httpx.MockTransport(ehr.handle))
    app = create_app(load_settings(work / "k.toml"), http=http, configure_logging=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield App(client, ehr, app)
    finally:
        await app.state.storage.aclose()
        await http.aclose()


@pytest.fixture
async def smart(tmp_path: Path) -> AsyncIterator[App]:
    async with running(tmp_path) as app:
        yield app


# -- the EHR's configuration, cached --------------------------------------------------------------------------------
async def test_launches_read_the_issuers_configuration_once(smart: App) -> None:
    first = await smart.launch()
    together = await asyncio.gather(*[smart.launch() for _ in range(2)])
    assert [r.status_code for r in (first, *together)] == [302, 302, 302]
    assert smart.ehr.calls[DISCOVERY] == 1
    # The cached configuration is the one used: the authorization request goes to its endpoint.
    assert together[1].headers["location"].startswith("https://ehr.test/auth?")


async def test_an_unavailable_configuration_is_a_page_and_is_not_asked_again_by_every_launch(smart: App) -> None:
    smart.ehr.discovery_status = 503
    pages = [await smart.launch() for _ in range(3)]
    assert {p.status_code for p in pages} == {502} and "configuration is unavailable" in pages[-1].text
    assert smart.ehr.calls[DISCOVERY] == 1 and smart.pending() == 0


#: The fetch is the test's own: the cache never uses its client.
_UNUSED = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(599)))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _config(name: str) -> SmartConfiguration:
    return SmartConfiguration(name, f"{name}/auth", f"{name}/token", None, frozenset(), ("S256",))


class _Issuers:
    """Fetches that answer, fail or block on demand, counted per issuer."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.failing: set[str] = set()
        self.gate: asyncio.Event | None = None

    async def __call__(self, http: httpx.AsyncClient, iss: str) -> SmartConfiguration:
        self.calls[iss] += 1
        if self.gate is not None:
            await self.gate.wait()
        if iss in self.failing:
            raise OAuthProblem("The EHR's SMART configuration is unavailable", f"{iss} answered HTTP 503.", 502)
        return _config(iss)


async def test_a_configuration_is_kept_for_its_ttl_and_a_failure_only_briefly() -> None:
    clock, fetch = _Clock(), _Issuers()
    cache = SmartConfigurations(_UNUSED, ttl_s=300, failure_ttl_s=10, clock=clock, fetch=fetch)
    fetch.failing.add("https://a")
    with pytest.raises(OAuthProblem):
        await cache.get("https://a/")
    clock.now = 9
    with pytest.raises(OAuthProblem):
        await cache.get("https://a")  # the failure, remembered (the trailing slash names the same issuer)
    assert fetch.calls["https://a"] == 1
    fetch.failing.clear()
    clock.now = 10.5  # the EHR is back: it is asked again within seconds
    assert (await cache.get("https://a")).token_endpoint == "https://a/token"
    clock.now = 310
    await cache.get("https://a")
    assert fetch.calls["https://a"] == 2
    clock.now = 311  # after its TTL a configuration is read again
    await cache.get("https://a")
    assert fetch.calls["https://a"] == 3


async def test_at_most_max_issuers_are_kept_the_least_recently_used_leaving_first() -> None:
    fetch = _Issuers()
    cache = SmartConfigurations(_UNUSED, max_issuers=2, clock=_Clock(), fetch=fetch)
    for iss in ("https://a", "https://b", "https://a", "https://c", "https://a", "https://b"):
        await cache.get(iss)
    assert fetch.calls == Counter({"https://a": 1, "https://b": 2, "https://c": 1})


async def test_launches_waiting_on_a_fetch_whose_launch_went_away_fetch_for_themselves() -> None:
    fetch = _Issuers()
    fetch.gate = asyncio.Event()
    cache = SmartConfigurations(_UNUSED, clock=_Clock(), fetch=fetch)
    first = asyncio.ensure_future(cache.get("https://a"))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(cache.get("https://a"))
    await asyncio.sleep(0)
    assert fetch.calls["https://a"] == 1  # the second launch waits on the first one's fetch
    first.cancel()
    await asyncio.sleep(0)
    fetch.gate.set()
    assert (await waiting).issuer == "https://a" and fetch.calls["https://a"] == 2


# -- the launch value and the pending launches, bounded ---------------------------------------------------------------
async def test_a_launch_value_over_the_limit_is_a_400_page_and_nothing_is_fetched_or_stored(smart: App) -> None:
    page = await smart.launch("x" * (MAX_LAUNCH_LENGTH + 1))
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]
    assert f"longer than this app accepts ({MAX_LAUNCH_LENGTH} characters)" in page.text
    assert smart.ehr.calls[DISCOVERY] == 0 and smart.pending() == 0
    longest = await smart.launch("x" * MAX_LAUNCH_LENGTH)
    assert longest.status_code == 302
    assert parse_qs(urlsplit(longest.headers["location"]).query)["launch"] == ["x" * MAX_LAUNCH_LENGTH]


async def test_over_the_pending_launch_cap_a_launch_is_a_503_page_and_stores_nothing(smart: App) -> None:
    assert [(await smart.launch()).status_code for _ in range(3)] == [302, 302, 302]
    over = await smart.launch()
    assert over.status_code == 503 and over.headers["retry-after"] == "60"
    assert "Too many sign-ins are in progress" in over.text and "Traceback" not in over.text
    assert smart.pending() == 3


async def test_a_completed_launch_frees_its_place_under_the_cap(smart: App) -> None:
    launches = [await smart.launch() for _ in range(3)]
    state = parse_qs(urlsplit(launches[0].headers["location"]).query)["state"][0]
    done = await smart.client.get("/smart/callback", params={"code": "code-1", "state": state})
    assert done.status_code == 303 and done.headers["location"].startswith("/smart/app/")
    assert (await smart.launch()).status_code == 302


async def test_a_binding_cookie_this_app_did_not_mint_is_replaced(smart: App) -> None:
    smart.client.cookies.set(BROWSER_COOKIE, "forged" * 500, domain="app.test")
    launched = await smart.launch()
    minted = launched.cookies[BROWSER_COOKIE]
    assert launched.status_code == 302 and len(minted) == 43 and "forged" not in minted
    smart.client.cookies.clear()
    smart.client.cookies.set(BROWSER_COOKIE, minted, domain="app.test")
    assert (await smart.launch()).cookies[BROWSER_COOKIE] == minted  # its own cookie is kept


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_a_state_or_login_id_no_store_can_hold_is_a_page_not_a_500(
        request: pytest.FixtureRequest, tmp_path: Path, store: str) -> None:
    url = None
    if store == "postgresql":
        url = str(request.getfixturevalue("postgres").create_database(f"l_{uuid.uuid4().hex[:12]}"))
    async with running(tmp_path, url) as smart:
        await smart.launch()  # a binding cookie, as a real browser would carry
        for hostile in ("a\x00b", "s" * 5000):
            callback = await smart.client.get("/smart/callback", params={"code": "c", "state": hostile})
            assert callback.status_code == 400 and "This sign-in link is not valid" in callback.text
            review = await smart.client.get(f"/smart/app/{quote(hostile)}")
            assert review.status_code == 401 and "Your sign-in has ended" in review.text
            logout = await smart.client.post(f"/smart/app/{quote(hostile)}/logout", data={"csrf": "x"})
            assert logout.status_code == 401

"""What the SMART app does with what an EHR (or anyone) sends it, in-process: the app through httpx.ASGITransport,
the EHR's discovery and token endpoints as an httpx.MockTransport that counts its calls. No browser, no sandbox:
the answers here are the ones a real EHR cannot be made to give on demand (issue 21 item 5)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketamine_cds.app import create_app
from ketamine_cds.settings import load_settings
from smart_app.oauth import OAuthProblem, token_lifetime_s

from .fake_ehr import DISCOVERY, ISS, smart_configuration

pytestmark = pytest.mark.anyio

BASE = "http://app.test"


@dataclass
class Ehr:
    """The EHR's SMART endpoints. ``token`` is the body its token endpoint answers with (the test changes it)."""

    token: dict[str, Any] = field(default_factory=lambda: {"access_token": "synthetic-token", "token_type": "Bearer",
                                                           "expires_in": 3600, "scope": "launch patient/*.rs",
                                                           "patient": "kc-01"})
    calls: Counter[str] = field(default_factory=Counter)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if path == DISCOVERY:
            return httpx.Response(200, json=smart_configuration())
        if path == "/token":
            return httpx.Response(200, content=json.dumps(self.token).encode(),
                                  headers={"Content-Type": "application/json"})
        return httpx.Response(404)


@dataclass
class App:
    client: httpx.AsyncClient
    ehr: Ehr
    app: Any

    async def launch(self, launch: str | None = "launch-1", iss: str = ISS) -> httpx.Response:
        params = {"iss": iss} | ({"launch": launch} if launch is not None else {})
        return await self.client.get("/smart/launch", params=params)

    async def callback_after(self, launched: httpx.Response) -> httpx.Response:
        """The EHR's redirect back to the app, as the browser that launched would follow it."""
        state = parse_qs(urlsplit(launched.headers["location"]).query)["state"][0]
        return await self.client.get("/smart/callback", params={"code": "code-1", "state": state})


@pytest.fixture
async def smart(tmp_path: Path) -> AsyncIterator[App]:
    (tmp_path / "k.toml").write_text(f'[cds]\npublic_base_url = "{BASE}"\nfeedback_db = "state.sqlite3"\n'
                                     f'[smart]\nallowed_issuers = ["{ISS}"]\n')
    ehr = Ehr()
    http = httpx.AsyncClient(transport=httpx.MockTransport(ehr.handle))
    app = create_app(load_settings(tmp_path / "k.toml"), http=http, configure_logging=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield App(client, ehr, app)
    app.state.storage.close()
    await http.aclose()


# -- a token response whose expires_in is not a number: a page, not a 500 --------------------------------------------
@pytest.mark.parametrize("expires_in", ["soon", "", "3600s", [3600], {"s": 1}, True, -1, 10**400, "1" * 5000])
async def test_a_token_response_whose_expires_in_is_not_a_number_is_a_clear_page(smart: App, expires_in: Any) -> None:
    smart.ehr.token["expires_in"] = expires_in
    page = await smart.callback_after(await smart.launch())
    assert page.status_code == 502 and "text/html" in page.headers["content-type"]
    assert "sign-in answer cannot be used" in page.text
    assert "expires_in is not a number of seconds" in page.text and "Traceback" not in page.text


async def test_expires_in_as_a_string_of_digits_is_read_as_seconds(smart: App) -> None:
    smart.ehr.token["expires_in"] = "3599"  # as some EHRs write it
    page = await smart.callback_after(await smart.launch())
    assert page.status_code == 303 and page.headers["location"].startswith("/smart/app/")


async def test_no_expires_in_means_the_default_lifetime(smart: App) -> None:
    smart.ehr.token["expires_in"] = None  # null, as absent: RFC 6749 makes expires_in optional
    page = await smart.callback_after(await smart.launch())
    assert page.status_code == 303


async def test_a_refresh_whose_expires_in_is_not_a_number_is_a_clear_page(smart: App) -> None:
    # The first token lives 10 s (inside the 60 s margin): the review must refresh before it reads the chart.
    smart.ehr.token |= {"expires_in": 10, "refresh_token": "synthetic-refresh"}
    landed = await smart.callback_after(await smart.launch())
    smart.ehr.token = {"access_token": "synthetic-token-2", "expires_in": "NaN"}
    page = await smart.client.get(landed.headers["location"])
    assert page.status_code == 502 and "expires_in is not a number of seconds" in page.text
    assert smart.ehr.calls["/token"] == 2


@given(st.one_of(st.text(max_size=30), st.floats(), st.integers(), st.booleans(), st.none(),
                 st.lists(st.integers(), max_size=2)))
def test_any_expires_in_is_a_lifetime_or_a_clear_refusal(value: Any) -> None:
    try:
        lifetime = token_lifetime_s(value)
    except OAuthProblem as exc:
        assert exc.status == 502 and "expires_in" in exc.message
    else:
        assert 0 <= lifetime <= 10**9



# -- each callback's outcome, counted by what happened (issue 22 item 1), not guessed from a status -------------------
def _launches(result: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("ketamine_cds_smart_launches_total", {"result": result}) or 0.0


async def test_the_metrics_count_each_callback_by_its_outcome(smart: App) -> None:
    import sqlalchemy as sa

    from storage.schema import smart_launch

    before = {r: _launches(r) for r in ("completed", "expired", "failed", "refused")}
    assert (await smart.callback_after(await smart.launch())).status_code == 303
    late = await smart.launch()
    with smart.app.state.storage.engine.begin() as conn:
        conn.execute(sa.update(smart_launch).values(created=smart_launch.c.created - 3600))
    assert (await smart.callback_after(late)).status_code == 400  # a 400, counted as expired, not refused
    smart.ehr.token["expires_in"] = "soon"
    assert (await smart.callback_after(await smart.launch())).status_code == 502
    assert (await smart.client.get("/smart/callback", params={"state": "unknown"})).status_code == 400
    assert {r: _launches(r) - n for r, n in before.items()} == {"completed": 1, "expired": 1, "failed": 1,
                                                                "refused": 1}

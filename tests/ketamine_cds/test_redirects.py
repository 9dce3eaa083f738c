"""Trailing-slash redirects (issue 21 item 5): built from ``[cds] public_base_url``, never from the request's
``Host`` or ``X-Forwarded-Host``, so that a forged header cannot make this service send a caller to another site."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ketamine_cds.app import create_app
from ketamine_cds.settings import load_settings

BASE = "https://cds.example.org"
#: Routes of every face, each asked with a trailing slash (and the mounted sandbox without its slash).
MOVED = {"/cds-services/": "/cds-services", "/cds-services/ketamine-order-sign/": "/cds-services/ketamine-order-sign",
         "/smart/launch/": "/smart/launch", "/healthz/": "/healthz", "/readyz/": "/readyz", "/sandbox": "/sandbox/"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> object:
    work = tmp_path_factory.mktemp("redirects")
    (work / "k.toml").write_text(f'[cds]\npublic_base_url = "{BASE}"\nfeedback_db = "state.sqlite3"\n')
    sandbox = Starlette(routes=[Route("/", lambda _: PlainTextResponse("sandbox"))])
    return create_app(load_settings(work / "k.toml"), insecure_no_auth=True, sandbox=sandbox,
                      configure_logging=False)


def _get(app: object, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            return await client.request(method, path, headers=headers)
    return asyncio.run(call())


_HOSTS = st.one_of(st.sampled_from(["evil.example", "evil.example:443", "cds.example.org.evil.example", "[::1]",
                                    "127.0.0.1:8000", "a@evil.example", "evil.example/x"]),
                   st.from_regex(r"\A[a-z0-9.\-]{1,30}(:[0-9]{1,5})?\Z"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=_HOSTS, forwarded=_HOSTS, path=st.sampled_from(sorted(MOVED)), query=st.sampled_from(["", "a=1"]),
       method=st.sampled_from(["GET", "POST"]))
def test_a_trailing_slash_redirect_goes_to_the_public_base_url_whatever_the_host_header(
        app: object, host: str, forwarded: str, path: str, query: str, method: str) -> None:
    headers = {"Host": host, "X-Forwarded-Host": forwarded, "X-Forwarded-Proto": "http"}
    r = _get(app, method, path + (f"?{query}" if query else ""), headers)
    assert r.status_code == 307
    assert r.headers["location"] == BASE + MOVED[path] + (f"?{query}" if query else "")


def test_a_path_that_names_no_route_is_a_404_operation_outcome_not_a_redirect(app: object) -> None:
    for path in ("/nothing/", "//evil.example/", "/cds-services/unknown-service/x/"):
        r = _get(app, "GET", path, {"Host": "evil.example"})
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome", path
        assert "location" not in r.headers


def test_the_routes_themselves_still_answer(app: object) -> None:
    assert _get(app, "GET", "/healthz", {}).json() == {"status": "alive"}
    assert _get(app, "GET", "/sandbox/", {}).text == "sandbox"

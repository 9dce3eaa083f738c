"""The CDS fallback path against a misbehaving FHIR server on loopback (slow, 401, 403, 500, invalid JSON, HTML,
looping and foreign next links, gigantic pages): the answer comes within the budget, the token never goes to another
host, and nothing that could not be fetched is reported absent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ketamine_cds.settings import Settings

from ..conftest import free_port
from ..stack import serving
from .conftest import BASE, Keys, close_app, hook_request, make_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
BUDGET_S = 1.0
TOKEN = "fault-suite-token"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, Recorder]]:
    """A faulty FHIR server (the fault is the first path segment) and a foreign host that records who calls it."""
    port, foreign_port = free_port(), free_port()
    foreign = Recorder()

    async def record(request: Request) -> Response:
        foreign.requests.append((request.url.path, request.headers.get("authorization")))
        return JSONResponse({"resourceType": "Bundle", "type": "searchset", "entry": []})

    async def faulty(request: Request) -> Response:
        mode = request.path_params["mode"]
        rest = request.path_params["rest"]
        empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        if mode == "slow":
            await asyncio.sleep(10)
            return JSONResponse(empty)
        if mode in ("401", "403", "500", "503"):
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, status_code=int(mode))
        if mode == "badjson":
            return PlainTextResponse('{"resourceType": "Bundle", "entry": [', media_type="application/fhir+json")
        if mode == "html":
            return PlainTextResponse("<html>proxy error</html>", media_type="text/html")
        if mode == "loop":
            return JSONResponse({**empty, "link": [{"relation": "next", "url": str(request.url)}]})
        if mode == "foreign":
            return JSONResponse({**empty, "link": [
                {"relation": "next", "url": f"http://localhost:{foreign_port}/fhir/{rest}?page=2"}]})
        if mode == "giant":
            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"resourceType":"Bundle","type":"searchset","entry":['
                for _ in range(4000):
                    yield b'{"resource":{"resourceType":"Basic","id":"x"}},' * 200
                yield b"{}]}"
            return StreamingResponse(chunks(), media_type="application/fhir+json")
        return JSONResponse(empty)

    faulty_app = Starlette(routes=[Route("/{mode}/fhir/{rest:path}", faulty)])
    foreign_app = Starlette(routes=[Route("/{rest:path}", record)])
    with serving(faulty_app, port, log_level="error", lifespan="off"), \
            serving(foreign_app, foreign_port, log_level="error", lifespan="off"):
        yield f"http://127.0.0.1:{port}", foreign


MODES = ["slow", "401", "403", "500", "503", "badjson", "html", "loop", "foreign", "giant"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_misbehaving_fhir_server_never_makes_unfetched_data_absent(
        servers: tuple[str, Recorder], settings: Settings, keys: Keys, mode: str) -> None:
    base, foreign = servers
    settings.cds.fhir_budget_s = BUDGET_S
    settings.cds.fhir_max_response_bytes = 2_000_000
    body = hook_request("01", fhirServer=f"{base}/{mode}/fhir",
                        fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                           "scope": "patient/*.read", "subject": "ketamine-cds"})
    # The patient and conditions come in the prefetch (else 412); everything else must come from the server.
    body["prefetch"] = {k: v for k, v in body["prefetch"].items() if k in ("patient", "conditions")}
    async with make_client(settings) as client:
        path = "/cds-services/ketamine-order-sign"
        started = time.perf_counter()
        r = await client.post(path, content=json.dumps(body).encode(), headers={
            "Authorization": f"Bearer {keys.token(BASE + path)}", "Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
        await close_app(client)
    assert r.status_code == 200, r.text
    assert elapsed < BUDGET_S + 1.5, f"{mode}: {elapsed:.1f} s"
    extension = r.json()["cards"][0]["extension"]["ketamine-cds"]
    assert extension["verdict"] == "needs_workup"
    assert extension["treatment_resistance"] == "unknown"
    for cid in ("uncontrolled_hypertension", "substance_use", "pregnancy", "ketamine_hypersensitivity"):
        assert extension["contraindications"][cid] == "unknown", (mode, cid)
    # Decided from the prefetched conditions alone:
    assert extension["contraindications"]["bipolar"] == "absent"
    assert all(auth is None or TOKEN not in auth for _, auth in foreign.requests)
    assert foreign.requests == []  # a next link to another host is not followed at all

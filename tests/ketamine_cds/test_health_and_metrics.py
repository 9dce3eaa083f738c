"""Health, readiness and metrics: what a load balancer and Prometheus read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketamine_cds.settings import Settings

from ..cds_hooks.conftest import BASE, Keys, close_app, hook_request, make_client

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz_answer_when_the_database_and_keys_are_there(cds: httpx.AsyncClient) -> None:
    assert (await cds.get("/healthz")).json() == {"status": "alive"}
    ready = await cds.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_readyz_reflects_this_replicas_database_not_an_ehrs_keys_and_names_no_issuer(
        settings: Settings, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    from ketamine_cds.settings import CdsClientSettings

    other = "https://other-ehr.test"
    settings.cds.clients.append(CdsClientSettings(issuer=other, jwks_url="https://other-ehr.test/jwks.json"))
    outbound: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        outbound.append(str(request.url))
        return httpx.Response(503)  # the other EHR's key server is down

    async with make_client(settings, http=httpx.AsyncClient(transport=httpx.MockTransport(ehr))) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        assert outbound == []  # an anonymous GET makes the replica call no one
        path = "/cds-services/ketamine-order-sign"
        with caplog.at_level("WARNING", logger="ketamine_cds"):
            for _ in range(2):  # that EHR's calls are refused; the other clients' are served
                r = await client.post(path, json=hook_request("10"),
                                      headers={"Authorization": f"Bearer {keys.token(BASE + path, iss=other)}"})
                assert r.status_code == 401
            ok = await client.post(path, json=hook_request("10"),
                                   headers={"Authorization": f"Bearer {keys.token(BASE + path)}"})
            assert ok.status_code == 200
        logged = [r.getMessage() for r in caplog.records if "jwks_unavailable" in r.getMessage()]
        assert logged == ['{"event": "jwks_unavailable", "problem": "the JWKS of client https://other-ehr.test could '
                          'not be fetched (HTTP 503)"}']  # for the operator, once
        assert (await client.get("/readyz")).status_code == 200
        await close_app(client)


async def test_readyz_is_503_when_the_database_does_not_answer(settings: Settings) -> None:
    async with make_client(settings) as client:
        client._transport.app.state.storage.engine.dispose()  # type: ignore[attr-defined]
        # A database file that cannot be opened any more: the store answers "unavailable", never a 500.
        settings.cds.feedback_db.unlink()
        settings.cds.feedback_db.mkdir()
        r = await client.get("/readyz")
        await close_app(client)
    assert r.status_code == 503 and "database: did not answer" in r.text
    assert "ehr.test" not in r.text  # never the trusted issuers


async def test_metrics_count_calls_cards_verdicts_gaps_refusals_and_feedback_without_phi(
        cds: httpx.AsyncClient, keys: Keys) -> None:
    async def post(service: str, body: object, token: str | None = None, suffix: str = "") -> httpx.Response:
        path = f"/cds-services/{service}{suffix}"
        return await cds.post(path, json=body, headers={
            "Authorization": f"Bearer {token if token is not None else keys.token(BASE + path)}"})

    before = (await cds.get("/metrics")).text
    card = (await post("ketamine-order-sign", hook_request("10"))).json()["cards"][0]
    await post("ketamine-order-sign", hook_request("10", drop=("bloodPressure",)))
    await post("ketamine-order-sign", hook_request("10"), token="forged")
    fed = await post("ketamine-order-sign", {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                                                           "outcomeTimestamp": "2026-11-01T10:00:00Z",
                                                           "acceptedSuggestions": [
                                                               {"id": card["suggestions"][0]["uuid"]}]}]},
                     suffix="/feedback")
    assert fed.status_code == 200, fed.text
    r = await cds.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text

    def value(text: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def grew(name: str, by: float = 1) -> bool:
        return value(after, name) - value(before, name) >= by

    assert grew('ketamine_cds_service_calls_total{service="ketamine-order-sign",status="200"}', 2)
    assert grew('ketamine_cds_cards_total{indicator="critical",service="ketamine-order-sign"}', 2)
    assert grew('ketamine_cds_verdicts_total{service="ketamine-order-sign",verdict="contraindicated"}', 2)
    assert grew('ketamine_cds_data_gaps_total{reason="not_provided",resource_type="Observation"}')
    assert grew('ketamine_cds_jwt_refusals_total{reason="not a compact JWS"}')
    assert grew('ketamine_cds_feedback_total{outcome="accepted"}')
    # Per service (a known id in the route template), never the raw path.
    assert grew('ketamine_cds_http_requests_total{route="/cds-services/ketamine-order-sign/feedback",status="200"}')
    assert grew('ketamine_cds_http_request_seconds_count{route="/cds-services/ketamine-order-sign",status="401"}')
    assert "kc-10" not in after and "Practitioner" not in after and "ehr.test" not in after  # no PHI, no callers


async def test_after_the_database_hangs_calls_and_readyz_answer_503_within_the_timeout(
        settings: Settings, keys: Keys, postgres: Any, tmp_path: Path) -> None:
    import time
    import uuid

    from storage import load_or_create_key, open_storage
    from storage.sealing import Sealer

    from ..stalling_proxy import StallingProxy

    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    key_file = tmp_path / "storage.key"
    open_storage(url, Sealer(load_or_create_key(key_file, create=True)), migrate=True).close()
    with StallingProxy(("127.0.0.1", postgres.port)) as proxy:
        settings.storage.database_url = url.replace(f":{postgres.port}/", f":{proxy.port}/")
        settings.storage.encryption_key_file, settings.storage.timeout_s = key_file, 1.0
        async with make_client(settings) as client:
            path = "/cds-services/ketamine-order-sign"

            async def call() -> httpx.Response:
                return await client.post(path, json=hook_request("10"),
                                         headers={"Authorization": f"Bearer {keys.token(BASE + path)}"})

            assert (await call()).status_code == 200
            proxy.stall()
            for _ in range(2):
                started = time.monotonic()
                r = await call()
                assert r.status_code == 503 and r.json()["resourceType"] == "OperationOutcome"
                assert time.monotonic() - started < 1.5
            started = time.monotonic()
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and time.monotonic() - started < 1.5
            proxy.resume()
            storage = client._transport.app.state.storage  # type: ignore[attr-defined]
            await close_app(client)
            await storage.aclose()

"""Request validation: every bad request gets the right 4xx with an OperationOutcome, never a 500."""

from __future__ import annotations

import pytest

from ketamine_cds.settings import Settings

from .conftest import BASE, Keys, Post, close_app, hook_request, make_client

pytestmark = pytest.mark.anyio


def assert_outcome(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code


async def test_unknown_service_is_404(post: Post) -> None:
    assert_outcome(await post("nope", hook_request("01")), 404, "not-found")


async def test_malformed_json_is_400(post: Post) -> None:
    assert_outcome(await post("ketamine-order-sign", None, raw=b'{"hook": "order-sign",'), 400, "structure")


async def test_a_hook_that_does_not_match_the_service_is_400(post: Post) -> None:
    r = await post("ketamine-order-sign", hook_request("01", hook="order-select"))
    assert_outcome(r, 400, "invalid")
    assert "answers hook order-sign" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("mutate,needle", [
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b["context"].pop("draftOrders"), "draftOrders"),
    (lambda b: b["context"].pop("patientId"), "patientId"),
    (lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 30,
                                           "scope": "patient/*.read", "subject": "x"}), "fhirServer is required"),
    (lambda b: b.update(fhirServer="ftp://x"), "http(s)"),
    (lambda b: b["context"].update(draftOrders=[]), "draftOrders must be a Bundle"),
    (lambda b: b.update(context="nope"), "context"),
])
async def test_invalid_requests_are_400(post: Post, mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    body = hook_request("01")
    mutate(body)
    r = await post("ketamine-order-sign", body)
    assert r.status_code == 400
    assert needle in r.json()["issue"][0]["diagnostics"]


async def test_order_select_needs_selections(post: Post) -> None:
    body = hook_request("01", hook="order-select")
    body["context"].pop("selections")
    assert_outcome(await post("ketamine-order-select", body), 400, "required")


async def test_a_body_over_the_limit_is_413(settings: Settings, keys: Keys) -> None:
    settings.cds.max_body_bytes = 10_000
    async with make_client(settings) as client:
        path = "/cds-services/ketamine-order-sign"
        r = await client.post(path, content=b"{" + b" " * 20_000 + b"}",
                              headers={"Authorization": f"Bearer {keys.token(BASE + path)}",
                                       "Content-Type": "application/json"})
        assert_outcome(r, 413, "too-costly")
        await close_app(client)


async def test_wrong_method_is_an_operation_outcome(post: Post, cds) -> None:  # type: ignore[no-untyped-def]
    r = await cds.get("/cds-services/ketamine-order-sign")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"

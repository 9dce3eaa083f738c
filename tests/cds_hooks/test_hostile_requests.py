"""Hostile requests found by the outside audit (issue #8): each answered with a clear 4xx, never a 500."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ketamine_cds.settings import Settings

from .conftest import BASE, Keys, Post, close_app, hook_request, make_client

pytestmark = pytest.mark.anyio


def assert_outcome(r: Any, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("path_suffix", ["", "/feedback"])
async def test_json_nested_a_thousand_deep_is_400(post: Post, path_suffix: str) -> None:
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    assert_outcome(await post("ketamine-order-sign", None, raw=deep, path_suffix=path_suffix), 400)
    arrays = b"[" * 100_000 + b"]" * 100_000
    assert_outcome(await post("ketamine-order-sign", None, raw=arrays, path_suffix=path_suffix), 400)


@pytest.mark.parametrize("raw", [b'{"hook": NaN}', b'{"hook": Infinity}', b'{"x": -Infinity}'])
async def test_non_json_numbers_are_400(post: Post, raw: bytes) -> None:
    assert_outcome(await post("ketamine-order-sign", None, raw=raw), 400)


async def test_a_prefetch_resource_with_a_list_or_object_resource_type_is_skipped_not_a_crash(post: Post) -> None:
    body = hook_request("01")
    body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": ["Condition"], "id": "x"}})
    body["prefetch"]["conditions"]["entry"].append({"fullUrl": {"a": 1}, "resource": {
        "resourceType": "Condition", "subject": {"reference": "Patient/kc-01"}}})
    body["prefetch"]["allergies"] = {"resourceType": {"nested": True}}
    r = await post("ketamine-order-sign", body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("change", [
    ("draftOrders", {"resourceType": "Bundle", "entry": {"resource": {}}}),
    ("userId", {"reference": "Practitioner/1"}),
    ("userId", "not a reference"),
    ("patientId", "../../admin"),
    ("patientId", "kc-01/_history"),
    ("patientId", "x" * 65),
    ("encounterId", ["e1"]),
])
async def test_context_fields_are_validated_at_the_edge(post: Post, change: tuple[str, Any]) -> None:
    body = hook_request("01")
    body["context"][change[0]] = change[1]
    assert_outcome(await post("ketamine-order-sign", body), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          None])
async def test_a_body_that_is_not_json_by_its_content_type_is_415(cds: Any, keys: Keys,
                                                                  content_type: str | None) -> None:
    path = "/cds-services/ketamine-order-sign"
    headers = {"Authorization": f"Bearer {keys.token(BASE + path)}"}
    if content_type:
        headers["Content-Type"] = content_type
    r = await cds.post(path, content=json.dumps(hook_request("01")).encode(), headers=headers)
    assert_outcome(r, 415)


async def test_an_unexpected_failure_is_a_500_whose_log_holds_no_phi(
        settings: Settings, keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import cds_hooks.orders

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("Patient/kc-01 Alma Rivera 1986-04-12")

    monkeypatch.setattr(cds_hooks.orders, "assess_pool", boom)
    async with make_client(settings) as client:
        path = "/cds-services/ketamine-order-sign"
        with caplog.at_level(logging.DEBUG):
            r = await client.post(path, content=json.dumps(hook_request("01")).encode(), headers={
                "Authorization": f"Bearer {keys.token(BASE + path)}", "Content-Type": "application/json"})
        await close_app(client)
    assert r.status_code == 500 and r.json()["issue"][0]["code"] == "exception"
    correlation = r.headers["x-correlation-id"]
    assert correlation in r.json()["issue"][0]["diagnostics"]
    logged = "\n".join(rec.getMessage() + str(rec.exc_info or "") for rec in caplog.records)
    assert "KeyError" in logged and correlation in logged and "/cds-services/{service_id}" in logged
    for phi in ("kc-01", "Alma", "Rivera", "1986-04-12", "Traceback"):
        assert phi not in logged and phi not in r.text

"""FHIR client faults: every failure becomes a typed gap for its resource type, never an empty result.

These use pytest-httpx because a real server cannot be made to time out, answer 503 then 200, or send a
malformed page on demand.
"""

from __future__ import annotations

import re

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_mapping import ClientSettings, DataDomain, FhirClient, GapReason, ResourceType, to_facts

BASE = "https://ehr.test/fhir"
pytestmark = pytest.mark.anyio


def bundle(*resources: dict, next_url: str | None = None) -> dict:  # type: ignore[type-arg]
    b: dict = {"resourceType": "Bundle", "type": "searchset",  # type: ignore[type-arg]
               "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def condition(cid: str) -> dict:  # type: ignore[type-arg]
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"}]}}


def url(path: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(BASE)}/{path}(\?.*)?$")


FAST = ClientSettings(request_timeout_s=0.5, budget_s=2.0, backoff_s=0.01)


@pytest.mark.parametrize("status,reason", [(401, GapReason.UNAUTHORIZED), (403, GapReason.FORBIDDEN),
                                           (500, GapReason.SERVER_ERROR), (400, GapReason.REJECTED)])
async def test_http_errors_become_gaps(httpx_mock: HTTPXMock, status: int, reason: GapReason) -> None:
    httpx_mock.add_response(url=url("Condition"), status_code=status)
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert [(g.resource_type, g.reason) for g in result.pool.gaps] == [(ResourceType.CONDITION, reason)]


async def test_a_timeout_is_a_gap(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=url("Observation"), is_reusable=True)
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.OBSERVATION])
    # One gap per Observation search, each naming the domain it leaves unknown.
    assert {g.reason for g in result.pool.gaps} == {GapReason.TIMEOUT}
    assert {d for g in result.pool.gaps for d in g.domains} == {
        DataDomain.PHQ9, DataDomain.GAD7, DataDomain.BLOOD_PRESSURE, DataDomain.DRUG_SCREENS, DataDomain.PREGNANCY}


async def test_503_and_429_are_retried_then_succeed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=url("Condition"), status_code=503)
    httpx_mock.add_response(url=url("Condition"), status_code=429, headers={"Retry-After": "0"})
    httpx_mock.add_response(url=url("Condition"), json=bundle(condition("c1")))
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert result.pool.gaps == [] and [r["id"] for r in result.pool.resources] == ["c1"]
    assert len(httpx_mock.get_requests()) == 3


async def test_retries_are_bounded(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_response(url=url("Condition"), status_code=503)
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert result.pool.gaps[0].reason is GapReason.SERVER_ERROR
    assert len(httpx_mock.get_requests()) == 1 + FAST.max_retries


async def test_pages_are_followed_and_a_bad_page_makes_the_type_a_gap_keeping_what_was_read(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=url("Condition"), json=bundle(condition("c1"), next_url=f"{BASE}/Condition?page=2"))
    httpx_mock.add_response(url=f"{BASE}/Condition?page=2", text="<html>oops</html>")
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert result.pool.gaps[0].reason is GapReason.MALFORMED
    assert [r["id"] for r in result.pool.resources] == ["c1"]  # evidence found is kept
    assert result.reports[0].pages == 1


async def test_a_next_link_to_another_server_is_not_followed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=url("Condition"),
                            json=bundle(condition("c1"), next_url="https://evil.test/fhir/Condition?p=2"))
    result = await FhirClient(BASE, token="secret", settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert result.pool.gaps[0].reason is GapReason.MALFORMED
    assert all(r.url.host == "ehr.test" for r in httpx_mock.get_requests())


async def test_not_a_bundle_is_malformed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=url("Condition"), json={"resourceType": "OperationOutcome", "issue": []})
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.CONDITION])
    assert result.pool.gaps[0].reason is GapReason.MALFORMED


async def test_the_bearer_token_is_sent_and_all_medication_statuses_are_requested(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=url("MedicationRequest"), json=bundle())
    await FhirClient(BASE, token="t0k", settings=FAST).fetch_patient("p", [ResourceType.MEDICATION_REQUEST])
    request = httpx_mock.get_requests()[0]
    assert request.headers["Authorization"] == "Bearer t0k"
    assert set(request.url.params["status"].split(",")) >= {"active", "completed", "stopped", "on-hold"}
    assert request.url.params["_include"] == "MedicationRequest:medication"


async def test_the_total_budget_cuts_slow_queries_into_gaps(httpx_mock: HTTPXMock) -> None:
    import asyncio

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle())

    httpx_mock.add_callback(slow, url=url("Observation"), is_optional=True, is_reusable=True)
    httpx_mock.add_response(url=url("Condition"), json=bundle(condition("c1")))
    settings = ClientSettings(request_timeout_s=10, budget_s=0.3)
    result = await FhirClient(BASE, settings=settings).fetch_patient(
        "p", [ResourceType.CONDITION, ResourceType.OBSERVATION])
    assert {(g.resource_type, g.reason) for g in result.pool.gaps} == {
        (ResourceType.OBSERVATION, GapReason.BUDGET_EXCEEDED)}
    facts = to_facts(result.pool, "p")
    assert facts.lacks(DataDomain.PHQ9) and not facts.lacks(DataDomain.CONDITIONS)


async def test_network_errors_are_gaps(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=url("AllergyIntolerance"))
    result = await FhirClient(BASE, settings=FAST).fetch_patient("p", [ResourceType.ALLERGY_INTOLERANCE])
    assert result.pool.gaps[0].reason is GapReason.NETWORK_ERROR


async def test_a_response_over_the_byte_cap_is_a_too_large_gap_not_a_crash(httpx_mock: HTTPXMock) -> None:
    huge = b'{"resourceType":"Bundle","type":"searchset","entry":[' + b'{"resource":{}},' * 200_000 + b'{}]}'
    httpx_mock.add_response(url=url("Condition"), content=huge)
    settings = ClientSettings(request_timeout_s=5, budget_s=5, max_response_bytes=1_000_000)
    result = await FhirClient(BASE, settings=settings).fetch_patient("p", [ResourceType.CONDITION])
    assert [(g.reason, g.domains) for g in result.pool.gaps] == [(GapReason.TOO_LARGE,
                                                                  frozenset({DataDomain.CONDITIONS}))]
    assert to_facts(result.pool, "p").lacks(DataDomain.CONDITIONS)


async def test_the_cap_on_all_responses_together_cuts_the_rest(httpx_mock: HTTPXMock) -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [condition(f"c{i}") for i in range(40)]}
    httpx_mock.add_response(url=url("Condition"), json=page, is_reusable=True)
    httpx_mock.add_response(url=url("AllergyIntolerance"), json=page, is_reusable=True)
    settings = ClientSettings(request_timeout_s=5, budget_s=5, max_total_bytes=5_000)
    result = await FhirClient(BASE, settings=settings).fetch_patient(
        "p", [ResourceType.CONDITION, ResourceType.ALLERGY_INTOLERANCE])
    assert GapReason.TOO_LARGE in {g.reason for g in result.pool.gaps}


async def test_a_patient_id_is_one_path_segment_on_the_wire(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, is_reusable=True)
    result = await FhirClient(BASE, settings=FAST).fetch_patient("../../admin", [ResourceType.PATIENT])
    (request,) = httpx_mock.get_requests()
    assert request.url.raw_path.decode().endswith("/fhir/Patient/..%2F..%2Fadmin")
    assert result.pool.gaps[0].reason is GapReason.NOT_FOUND

"""Discovery: the five services, their prefetch templates, and whether a JWT is needed."""

from __future__ import annotations

import re

import httpx
import pytest

from fhir_mapping import SEARCHES
from ketamine_cds.settings import Settings

from .conftest import BASE, Keys, close_app, make_client

pytestmark = pytest.mark.anyio


async def test_discovery_lists_five_services_with_prefetch(cds: httpx.AsyncClient) -> None:
    r = await cds.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert {s: services[s]["hook"] for s in services} == {
        "ketamine-order-select": "order-select", "ketamine-order-sign": "order-sign",
        "ketamine-patient-view": "patient-view", "ketamine-session-book": "appointment-book",
        "ketamine-session-discharge": "encounter-discharge"}
    for sid, s in services.items():
        assert s["title"] and s["description"] and s["usageRequirements"]
        if sid == "ketamine-session-discharge":
            assert set(s["prefetch"]) == {"patient", "encounter", "administrations", "recentAdministrations",
                                          "encounterBloodPressures"}
            continue
        assert set(s["prefetch"]) >= {"patient", "conditions", "medicationStatements", "medicationRequests",
                                      "phq9", "gad7", "bloodPressure", "drugScreens", "pregnancyTests", "allergies"}


async def test_prefetch_templates_use_only_context_tokens_and_r4_syntax(cds: httpx.AsyncClient) -> None:
    for service in (await cds.get("/cds-services")).json()["services"]:
        for key, template in service["prefetch"].items():
            tokens = set(re.findall(r"{{(.*?)}}", template))
            if key == "recentAdministrations":  # the patient's doses of the last day, in any encounter
                assert tokens == {"context.patientId", "today() - 1 days"}
            elif service["hook"] == "encounter-discharge" and key != "patient":
                assert tokens <= {"context.patientId", "context.encounterId"} and "context.encounterId" in tokens
            elif key == "appointments":  # the one date bound: a client that cannot resolve it leaves it out
                assert tokens == {"context.patientId", "today() - 56 days"}
            else:
                assert tokens == {"context.patientId"}
            assert "sort:desc" not in template
            # The one search parameter beyond the spec's recommended subset: _include of the referenced
            # Medication (issue #12); a client that ignores it costs a Medication read, never a dropped record.
            assert re.findall(r"_include=([^&]*)", template) in ([], ["MedicationRequest:medication"],
                                                                 ["MedicationStatement:medication"],
                                                                 ["MedicationAdministration:medication"],
                                                                 ["MedicationDispense:medication"])
    templates = (await cds.get("/cds-services")).json()["services"][0]["prefetch"]
    assert templates == {s.key: s.template() for s in SEARCHES}  # derived from the one search table
    assert "status=active,completed" in templates["medicationRequests"].replace("on-hold,cancelled,", "")
    assert "http://loinc.org|44261-6" in templates["phq9"]


async def test_discovery_is_open_by_default_and_closable(settings: Settings, keys: Keys) -> None:
    settings.cds.discovery_requires_auth = True
    async with make_client(settings) as client:
        assert (await client.get("/cds-services")).status_code == 401
        token = keys.token(BASE + "/cds-services")
        r = await client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        await close_app(client)


async def test_cors_preflight_allows_only_configured_origins(cds: httpx.AsyncClient) -> None:
    headers = {"Origin": "https://ehr-ui.test", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
    r = await cds.options("/cds-services/ketamine-order-sign", headers=headers)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://ehr-ui.test"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = await cds.options("/cds-services/ketamine-order-sign", headers={**headers, "Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(("minutes", "words"), [(120, "2 hours"), (60, "1 hour"), (90, "90 minutes")])
def test_the_session_services_describe_the_policys_monitoring_time(minutes: float, words: str) -> None:
    from dataclasses import replace

    from cds_hooks import SERVICES
    from eligibility import load_policy

    default = load_policy("default")
    policy = replace(default, thresholds=replace(default.thresholds, session_monitoring_minutes=minutes))
    book = SERVICES["ketamine-session-book"].discovery(policy)["description"]
    discharge = SERVICES["ketamine-session-discharge"].discovery(policy)["description"]
    assert f"the dose and {words} of monitoring" in book
    assert discharge.startswith("When a patient is discharged") and f"{words} of monitoring after the last dose" in \
        discharge
    assert "2 hours" in SERVICES["ketamine-session-book"].discovery(default)["description"]  # the label's 120 min

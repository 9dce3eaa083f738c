"""The session services end to end against a real FHIR server (SEKMET): each scenario of fixtures/sessions loaded,
then called with the prefetch an EHR would send and with none (the service fetches), at the scenario's own time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cds_hooks import SERVICES
from fhir_mapping.outbound import http_client
from ketamine_cds.settings import Settings

from ..conftest import Sekmet
from ..eligibility.test_policy import PRIMARY_HOSTS
from .conftest import BASE, Keys, close_app, make_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "sessions"
AUTH = {"access_token": "ehr-token", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
        "subject": "ketamine-cds"}
SERVICE = {"appointment-book": "ketamine-session-book", "encounter-discharge": "ketamine-session-discharge"}
OUTPATIENT = ("info", "Outpatient session: REMS monitoring form within 7 days; no driving until the next day")
#: Each scenario's cards: (indicator, summary), in order. The rule and source of each are in the closing note.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "discharge-too-early": [("critical", "Esketamine given 09:40: discharge not before 11:40 (2 h monitoring)"),
                            OUTPATIENT],
    "discharge-bp-not-decreasing": [
        ("warning", "BP 158/96 at 10:40 not yet decreasing: reassess before discharge"), OUTPATIENT],
    "discharge-no-bp-after-dose": [("warning", "No blood pressure after the dose: recheck before discharge"),
                                   OUTPATIENT],
    "discharge-ready": [OUTPATIENT],
    "discharge-inpatient-silent": [],
    "discharge-no-dose-silent": [],
    "book-ready-silent": [],
    "book-short-slot": [("warning", "Session slot 60 min: needs 135 min (dose + 2 h monitoring)")],
    "book-too-many": [("warning", "3 sessions in 7 days: the schedule allows 2 during induction (weeks 1-4)")],
    "book-bp-elevated": [
        ("warning", "Work-up before ketamine or esketamine: recheck BP (152/94 on 30 Oct)"),
        ("warning", "BP 152/94 on 30 Oct: check BP before dosing; consider delaying")],
    "book-no-transport": [("info", "No driving until the next day after restful sleep: arrange transport")],
    "book-based-on-order": [],
    "book-by-appointment-code": [("warning", "Session slot 60 min: needs 135 min (dose + 2 h monitoring)")],
    "book-not-a-session-silent": [],
    "book-contraindicated": [
        ("critical", "Ketamine or esketamine: bipolar disorder on record (2025) — excluded by clinic policy")],
}


def scenario(name: str) -> dict[str, Any]:
    return dict(json.loads((SCENARIOS / f"{name}.json").read_text()))


def test_every_scenario_has_an_expectation() -> None:
    assert {p.stem for p in SCENARIOS.glob("*.json")} == set(EXPECTED)


@pytest.fixture(scope="module")
def loaded(sekmet: Sekmet) -> Sekmet:
    for path in sorted(SCENARIOS.glob("*.json")):
        sekmet.load(json.loads(path.read_text())["resources"])
    return sekmet


@pytest.fixture
def session_settings(settings: Settings) -> Settings:
    settings.sessions.appointment_codes = ["https://ehr.example.org/appointment-type|TRD-NASAL"]
    return settings


async def call(settings: Settings, keys: Keys, body: dict[str, Any], now: dt.datetime) -> httpx.Response:
    service = SERVICE[body["hook"]]
    async with make_client(settings, now=lambda: now) as client:
        path = f"/cds-services/{service}"
        r = await client.post(path, json=body, headers={"Authorization": f"Bearer {keys.token(BASE + path)}"})
        await close_app(client)
    return r


async def server_prefetch(sekmet: Sekmet, service: str, context: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """What an EHR that honours every template of the service's discovery entry sends."""
    definition = SERVICES[service]
    prefetch: dict[str, Any] = {}
    async with http_client(timeout=20) as http:
        for search in definition.searches:
            q = search.query(context["patientId"], encounter_id=context.get("encounterId"), today=today)
            prefetch[search.key] = (await http.get(f"{sekmet.base_url}/{q.path}", params=q.params)).json()
    return prefetch


@pytest.mark.parametrize("mode", ["prefetch", "no prefetch"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_scenario_gets_its_cards_with_and_without_prefetch(
        name: str, mode: str, loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    s = scenario(name)
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    body: dict[str, Any] = {"hook": s["hook"], "hookInstance": f"session-{name}", "context": s["context"],
                            "fhirServer": loaded.base_url, "fhirAuthorization": AUTH}
    if mode == "prefetch":
        body["prefetch"] = await server_prefetch(loaded, SERVICE[s["hook"]], s["context"], now.date())
    r = await call(session_settings, keys, body, now)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == EXPECTED[name]
    for card in cards:  # the label, the REMS, the EU SmPC: primary sources only
        assert len(card["summary"]) <= 90
        assert urlsplit(card["source"]["url"]).hostname in PRIMARY_HOSTS, card["source"]


async def test_discharge_data_that_cannot_be_fetched_is_a_warning_never_silence(
        session_settings: Settings, keys: Keys) -> None:
    s = scenario("discharge-too-early")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    patient = next(e["resource"] for e in s["resources"]["entry"] if e["resource"]["resourceType"] == "Patient")
    body = {"hook": s["hook"], "hookInstance": "down", "context": s["context"], "prefetch": {"patient": patient},
            "fhirServer": "http://127.0.0.1:9/fhir", "fhirAuthorization": AUTH}
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        ("warning", "Session checks could not be made: data could not be fetched")]
    assert "the doses given in this encounter" in cards[0]["detail"]


async def test_without_the_patient_the_session_services_answer_412(session_settings: Settings, keys: Keys) -> None:
    s = scenario("discharge-ready")
    body = {"hook": s["hook"], "hookInstance": "no-patient", "context": s["context"], "prefetch": {}}
    r = await call(session_settings, keys, body, dt.datetime(2026, 11, 1, 11, 30, tzinfo=dt.UTC))
    assert r.status_code == 412 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("hook", "context", "needle"), [
    ("appointment-book", {"userId": "Practitioner/1", "patientId": "p1"}, "appointments"),
    ("appointment-book", {"userId": "Practitioner/1", "patientId": "p1", "appointments": []}, "Bundle"),
    ("encounter-discharge", {"userId": "Practitioner/1", "patientId": "p1"}, "encounterId"),
    ("encounter-discharge", {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "../x"}, "FHIR id"),
])
async def test_a_malformed_session_context_is_400(session_settings: Settings, keys: Keys, hook: str,
                                                  context: dict[str, Any], needle: str) -> None:
    r = await call(session_settings, keys, {"hook": hook, "hookInstance": "bad", "context": context},
                   dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    assert r.status_code == 400 and needle in r.text


async def test_discovery_lists_both_session_services_with_their_templates(cds: httpx.AsyncClient) -> None:
    services = {s["id"]: s for s in (await cds.get("/cds-services")).json()["services"]}
    book, discharge = services["ketamine-session-book"], services["ketamine-session-discharge"]
    assert book["hook"] == "appointment-book" and discharge["hook"] == "encounter-discharge"
    assert book["prefetch"]["appointments"].startswith("Appointment?patient={{context.patientId}}&date=ge{{today()")
    assert discharge["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"
    assert "context=Encounter/{{context.encounterId}}" in discharge["prefetch"]["administrations"]
    assert "conditions" not in discharge["prefetch"]  # discharge reads only what its rules need



async def test_feedback_on_a_session_card_is_bound_to_the_session_service(
        loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    s = scenario("discharge-too-early")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    body = {"hook": s["hook"], "hookInstance": "fb", "context": s["context"], "fhirServer": loaded.base_url,
            "fhirAuthorization": AUTH}
    async with make_client(session_settings, now=lambda: now) as client:
        def headers(path: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys.token(BASE + path)}"}
        path = "/cds-services/ketamine-session-discharge"
        card = (await client.post(path, json=body, headers=headers(path))).json()["cards"][0]
        item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:31:00Z",
                "overrideReason": {"reason": {"code": "specialist-decision"}}}
        ok = await client.post(path + "/feedback", json={"feedback": [item]}, headers=headers(path + "/feedback"))
        other = "/cds-services/ketamine-order-sign/feedback"
        refused = await client.post(other, json={"feedback": [item]}, headers=headers(other))
        await close_app(client)
    assert ok.status_code == 200 and refused.status_code == 400


async def test_a_dose_referencing_a_medication_that_cannot_be_read_makes_the_checks_unknown(
        session_settings: Settings, keys: Keys) -> None:
    s = scenario("discharge-ready")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    resources = [e["resource"] for e in s["resources"]["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    dose = dict(next(r for r in resources if r["resourceType"] == "MedicationAdministration"))
    del dose["medicationCodeableConcept"]
    dose["medicationReference"] = {"reference": "Medication/not-sent"}
    bps = [r for r in resources if r["resourceType"] == "Observation" and "encounter" in r]

    def bundle(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}
    body = {"hook": s["hook"], "hookInstance": "unread-med", "context": s["context"],
            "prefetch": {"patient": patient, "encounter": encounter, "administrations": bundle([dose]),
                         "encounterBloodPressures": bundle(bps)}}
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert [c["summary"] for c in cards] == ["Session checks could not be made: data could not be fetched"]


async def test_session_card_times_are_in_the_sites_time_zone_when_configured(
        loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    # 1 November 2026 is the day US daylight time ends (02:00 local): at 09:40 UTC Chicago is on CST, UTC-6.
    session_settings.sessions.display_timezone = "America/Chicago"
    s = scenario("discharge-too-early")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    body = {"hook": s["hook"], "hookInstance": "tz", "context": s["context"], "fhirServer": loaded.base_url,
            "fhirAuthorization": AUTH}
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert cards[0]["summary"] == "Esketamine given 03:40: discharge not before 05:40 (2 h monitoring)"


def test_an_unknown_display_time_zone_is_a_clear_settings_error(tmp_path: Path) -> None:
    from ketamine_cds.settings import SettingsError, load_settings

    (tmp_path / "k.toml").write_text('[sessions]\ndisplay_timezone = "Mars/Olympus"\n')
    with pytest.raises(SettingsError, match="not an IANA time zone"):
        load_settings(tmp_path / "k.toml")


# -- the right patient and encounter (issue 21 item 1) -----------------------------------------------------------
def _discharge_prefetch(name: str, *extra: dict[str, Any], encounter: dict[str, Any] | None = None) -> tuple[
        dict[str, Any], dt.datetime]:
    """A scenario's discharge request with a complete prefetch (no FHIR server), ``extra`` records added to the
    administrations and blood-pressure keys, and optionally another encounter in the encounter key."""
    s = scenario(name)
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    resources = [e["resource"] for e in s["resources"]["entry"]]
    def bundle(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    own_encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    doses = [r for r in resources if r["resourceType"] == "MedicationAdministration"]
    bps = [r for r in resources if r["resourceType"] == "Observation" and "encounter" in r]
    doses += [r for r in extra if r["resourceType"] == "MedicationAdministration"]
    bps += [r for r in extra if r["resourceType"] == "Observation"]
    body = {"hook": s["hook"], "hookInstance": f"scope-{name}", "context": s["context"],
            "prefetch": {"patient": patient, "encounter": encounter or own_encounter,
                         "administrations": bundle(doses), "recentAdministrations": bundle(doses),
                         "encounterBloodPressures": bundle(bps)}}
    return body, now


def _dose(mid: str, patient: str, encounter: str, at: str, name: str = "Spravato (esketamine) 56 mg") -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": mid, "status": "completed",
            "medicationCodeableConcept": {"text": name}, "subject": {"reference": f"Patient/{patient}"},
            "context": {"reference": f"Encounter/{encounter}"}, "effectiveDateTime": at}


async def test_another_patients_dose_and_encounter_are_left_out_counted_and_never_quoted(
        session_settings: Settings, keys: Keys) -> None:
    # discharge-ready (ks-04): dose at 09:00, discharge at 11:30. Patient B's dose at 11:00, B's encounter.
    intruder = _dose("patient-b-dose", "patient-b", "sess-ready", "2026-11-01T11:00:00Z", "Ketamine for Patient-B")
    their_encounter = {"resourceType": "Encounter", "id": "sess-ready", "status": "in-progress",
                       "class": {"code": "IMP"}, "subject": {"reference": "Patient/patient-b"}}
    body, now = _discharge_prefetch("discharge-ready", intruder, encounter=their_encounter)
    r = await call(session_settings, keys, body, now)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        ("warning", "2 records left out of the session checks: check the chart's data"),
        ("info", "If outpatient: REMS monitoring form within 7 days; no driving until the next day")]
    assert "2 records not about this patient" in cards[0]["detail"]
    assert "patient-b" not in r.text.lower() and "11:00" not in r.text


async def test_a_dose_in_another_encounter_counts_within_the_window_and_the_card_names_it(
        session_settings: Settings, keys: Keys) -> None:
    # discharge-ready (ks-04) at 11:30: its own dose at 09:00; another encounter's dose of the same patient at 10:30.
    recent = _dose("ks-04-clinic-dose", "ks-04", "clinic-visit", "2026-11-01T10:30:00Z")
    body, now = _discharge_prefetch("discharge-ready", recent)
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert cards[0]["summary"] == "Esketamine given 10:30: discharge not before 12:30 (2 h monitoring)"
    assert "recorded in another encounter (`Encounter/clinic-visit`)" in cards[0]["detail"]


async def test_a_dose_in_another_encounter_outside_the_window_is_left_out_and_counted(
        session_settings: Settings, keys: Keys) -> None:
    old = _dose("ks-04-yesterday", "ks-04", "yesterday", "2026-10-31T10:30:00Z")
    other_bp = {"resourceType": "Observation", "id": "ks-04-other-bp", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                "subject": {"reference": "Patient/ks-04"}, "encounter": {"reference": "Encounter/yesterday"},
                "effectiveDateTime": "2026-11-01T11:20:00Z",
                "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                               "valueQuantity": {"value": 170, "unit": "mmHg"}},
                              {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                               "valueQuantity": {"value": 105, "unit": "mmHg"}}]}
    body, now = _discharge_prefetch("discharge-ready", old, other_bp)
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert [c["summary"] for c in cards] == [
        "2 records left out of the session checks: check the chart's data", OUTPATIENT[1]]
    assert "2 records of another encounter" in cards[0]["detail"]


async def test_a_booking_based_on_another_patients_order_is_not_a_session(
        loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    s = scenario("book-based-on-order")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    theirs = {"resourceType": "ServiceRequest", "id": "their-order", "status": "active", "intent": "order",
              "code": {"text": "Esketamine nasal spray administration, 56 mg"},
              "subject": {"reference": "Patient/patient-b"}}
    appointment = dict(s["context"]["appointments"]["entry"][0]["resource"])
    appointment["basedOn"] = [{"reference": "ServiceRequest/their-order"}]
    context = {**s["context"], "appointments": {"resourceType": "Bundle", "type": "collection",
                                                "entry": [{"resource": appointment}, {"resource": theirs}]}}
    body = {"hook": s["hook"], "hookInstance": "their-order", "context": context, "fhirServer": loaded.base_url,
            "fhirAuthorization": AUTH}
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert [c["summary"] for c in cards] == ["1 record left out of the session checks: check the chart's data"]
    assert "their-order" not in json.dumps(cards)


async def test_another_patients_appointment_in_the_booking_is_left_out(
        loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    s = scenario("book-short-slot")
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    appointment = dict(s["context"]["appointments"]["entry"][0]["resource"])
    appointment["participant"] = [{"actor": {"reference": "Patient/patient-b"}, "status": "accepted"}]
    context = {**s["context"], "appointments": {"resourceType": "Bundle", "entry": [{"resource": appointment}]}}
    body = {"hook": s["hook"], "hookInstance": "their-appt", "context": context, "fhirServer": loaded.base_url,
            "fhirAuthorization": AUTH}
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert [c["summary"] for c in cards] == ["1 record left out of the session checks: check the chart's data"]


async def test_fhir_text_in_a_session_card_cannot_inject_markdown(session_settings: Settings, keys: Keys) -> None:
    hostile = _dose("ks-04-md", "ks-04", "sess-ready", "2026-11-01T11:00:00Z",
                    "ketamine [click here](https://evil.example/x) <img src=x onerror=alert(1)> ![i](http://e/i.png)")
    body, now = _discharge_prefetch("discharge-ready", hostile)
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": False}).render(cards[0]["detail"])
    assert "evil.example" in cards[0]["detail"].replace("\\", "")  # shown, as text
    assert 'href="https://evil' not in html and "<img" not in html


# -- blind: a warning card, never a 412 the EHR shows as nothing (issue 21 item 4) -------------------------------
@pytest.mark.parametrize(("name", "summary", "words"), [
    ("discharge-too-early", "Discharge checks not made: FHIR server unreachable — check manually",
     "The 2-hour observation and blood-pressure checks could not be made: **FHIR server unreachable**"),
    ("book-short-slot", "Session checks not made: FHIR server unreachable — check manually",
     "The session checks and the patient's assessment could not be made: **FHIR server unreachable**"),
])
async def test_an_unreachable_fhir_server_without_prefetch_is_a_warning_card_not_412(
        session_settings: Settings, keys: Keys, name: str, summary: str, words: str) -> None:
    s = scenario(name)
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    # Port 9 (discard) on loopback: nothing listens, the connection is refused, as from a server that is down.
    body = {"hook": s["hook"], "hookInstance": f"blind-{name}", "context": s["context"],
            "fhirServer": "http://127.0.0.1:9/fhir", "fhirAuthorization": AUTH}
    r = await call(session_settings, keys, body, now)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [("warning", summary)]
    assert words in cards[0]["detail"] and "check manually" in cards[0]["detail"]


# -- bounded (issue 21 item 3) -------------------------------------------------------------------------------------
def _appointments(n: int, patient: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Appointment", "id": f"bulk-{i}", "status": "proposed", "serviceType": [{"text": "Spravato"}],
        "start": f"2026-11-{3 + i % 20:02d}T09:00:00Z", "end": f"2026-11-{3 + i % 20:02d}T10:00:00Z",
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]}} for i in range(n)]}


async def test_more_appointments_than_the_cap_in_one_request_is_400(session_settings: Settings, keys: Keys) -> None:
    context = {"userId": "Practitioner/1", "patientId": "ks-08", "appointments": _appointments(51, "ks-08")}
    r = await call(session_settings, keys, {"hook": "appointment-book", "hookInstance": "bulk", "context": context},
                   dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC))
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert "at most 50" in r.text


async def test_an_answer_holds_at_most_max_cards_and_says_what_it_left_out(
        loaded: Sekmet, session_settings: Settings, keys: Keys) -> None:
    session_settings.cds.max_cards = 10
    context = {"userId": "Practitioner/1", "patientId": "ks-08", "appointments": _appointments(20, "ks-08")}
    body = {"hook": "appointment-book", "hookInstance": "many-cards", "context": context,
            "fhirServer": loaded.base_url, "fhirAuthorization": AUTH}
    r = await call(session_settings, keys, body, dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC))
    cards = r.json()["cards"]
    assert len(cards) == 10
    last = cards[-1]
    assert last["summary"].endswith("more cards left out (at most 10 per answer)")
    assert "Session slot 60 min" in last["detail"] or "arrange transport" in last["detail"]


@pytest.mark.integration
async def test_without_prefetch_a_dose_charted_in_another_encounter_is_found_and_counts(
        sekmet: Sekmet, session_settings: Settings, keys: Keys) -> None:
    """The service's own searches find it: the patient's doses of the last day, in any encounter (issue #21)."""
    s = scenario("discharge-ready")  # its own dose at 09:00, discharge at 11:30: ready, as far as this encounter goes
    text = json.dumps(s["resources"]).replace("ks-04", "ks-77").replace("sess-ready", "sess-77")
    resources = json.loads(text)
    resources["entry"].append({"resource": _dose("ks-77-clinic-dose", "ks-77", "clinic-77", "2026-11-01T10:30:00Z")})
    resources["entry"].append({"resource": {"resourceType": "Encounter", "id": "clinic-77", "status": "finished",
                                            "class": {"code": "AMB"}, "subject": {"reference": "Patient/ks-77"}}})
    sekmet.load(resources)
    context = {**s["context"], "patientId": "ks-77", "encounterId": "sess-77"}
    body = {"hook": s["hook"], "hookInstance": "other-encounter", "context": context, "fhirServer": sekmet.base_url,
            "fhirAuthorization": AUTH}
    now = dt.datetime.fromisoformat(s["now"].replace("Z", "+00:00"))
    cards = (await call(session_settings, keys, body, now)).json()["cards"]
    assert cards[0]["summary"] == "Esketamine given 10:30: discharge not before 12:30 (2 h monitoring)"
    assert "recorded in another encounter (`Encounter/clinic-77`)" in cards[0]["detail"]

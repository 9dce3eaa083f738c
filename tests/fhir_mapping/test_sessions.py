"""Reading sessions from FHIR: which appointments are ketamine sessions, what was given, BP with its time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fhir_mapping import (
    LeftOut,
    ResourcePool,
    SessionRecords,
    add_json,
    parse_instant,
    session_appointment,
)

CODE = "https://ehr.example.org/appointment-type|TRD-NASAL"


def appt(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "a1", "status": "proposed", "start": "2026-11-03T09:00:00+01:00",
            "end": "2026-11-03T11:30:00+01:00", "participant": [{"status": "accepted"}], **fields}


def recognise(resource: dict[str, Any], pool: ResourcePool | None = None) -> Any:
    pool = pool or ResourcePool()
    return session_appointment(resource, frozenset({CODE}), lambda ref, c: pool.resolve(ref, c))


@pytest.mark.parametrize(("fields", "how"), [
    ({"serviceType": [{"text": "SPRAVATO session"}]}, "appointment text"),
    ({"appointmentType": {"coding": [{"system": "https://ehr.example.org/appointment-type", "code": "TRD-NASAL"}]}},
     "appointment code TRD-NASAL"),
    ({"reasonCode": [{"coding": [{"display": "Esketamine treatment"}]}]}, "appointment text"),
    ({"description": "IV ketamine infusion #3"}, "appointment text"),
    ({"serviceType": [{"text": "Dental check-up"}]}, ""),
    ({"serviceType": [{"text": "Ketamine-free follow-up"}]}, "appointment text"),  # words, not meaning: a known limit
])
def test_a_session_is_recognised_by_code_or_words(fields: dict[str, Any], how: str) -> None:
    found = recognise(appt(**fields))
    assert found.how_recognised == how and found.is_session is bool(how)


def test_a_session_is_recognised_by_the_order_it_is_based_on_contained_or_in_the_pool() -> None:
    order = {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p"}, "code": {"text": "Esketamine 84 mg nasal administration"}}
    contained = appt(contained=[order | {"id": "o"}], basedOn=[{"reference": "#o"}])
    assert recognise(contained).is_session and recognise(contained).esketamine
    pool = ResourcePool()
    add_json(pool, order, "test")
    assert recognise(appt(basedOn=[{"reference": "ServiceRequest/o1"}]), pool).how_recognised == \
        "based on ServiceRequest/o1"
    assert not recognise(appt(basedOn=[{"reference": "ServiceRequest/missing"}])).is_session


@pytest.mark.parametrize(("comment", "noted"), [
    ("Husband will drive her home", True), ("transport booked (hospital car)", True), ("taxi at 12:00", True),
    ("Patient drives himself", False), ("self-driving", False), ("pt drives", False), ("", False),
    ("No transport available", False),
])
def test_transport_is_noted_only_when_someone_else_drives(comment: str, noted: bool) -> None:
    assert recognise(appt(serviceType=[{"text": "Spravato"}], comment=comment)).transport_noted is noted


def test_the_slot_length_comes_from_start_and_end_or_minutes_duration() -> None:
    assert recognise(appt(serviceType=[{"text": "Spravato"}])).minutes == 150
    by_duration = appt(serviceType=[{"text": "Spravato"}], minutesDuration=60)
    del by_duration["end"]
    assert recognise(by_duration).minutes == 60
    assert recognise(appt(serviceType=[{"text": "Spravato"}], start="2026-11-03")).minutes is None


def test_instants_keep_their_zone_and_a_bare_date_is_not_an_instant() -> None:
    assert parse_instant("2026-11-01T09:40:00+01:00") == dt.datetime(2026, 11, 1, 8, 40, tzinfo=dt.UTC)
    assert parse_instant("2026-11-01T09:40:00Z") == dt.datetime(2026, 11, 1, 9, 40, tzinfo=dt.UTC)
    assert parse_instant("2026-11-01T09:40:00") == dt.datetime(2026, 11, 1, 9, 40, tzinfo=dt.UTC)
    assert parse_instant("2026-11-01") is None and parse_instant(None) is None and parse_instant("T") is None


def _administration(aid: str, status: str, concept: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": aid, "status": status,
            "medicationCodeableConcept": concept, "subject": {"reference": "Patient/p"}, **extra}


def test_only_given_ketamine_doses_count() -> None:
    pool = ResourcePool()
    for res in (
        _administration("given", "completed", {"text": "Spravato 56 mg"}, effectiveDateTime="2026-11-01T09:40:00Z"),
        _administration("period", "completed", {"text": "ketamine 0.5 mg/kg IV"},
                        effectivePeriod={"start": "2026-11-01T08:00:00Z", "end": "2026-11-01T08:40:00Z"}),
        _administration("stopped", "not-done", {"text": "Spravato 56 mg"}, effectiveDateTime="2026-11-01T10:00:00Z"),
        _administration("other", "completed", {"text": "ondansetron 4 mg"}, effectiveDateTime="2026-11-01T10:00:00Z"),
    ):
        add_json(pool, res, "test")
    doses = SessionRecords(pool, "p").ketamine_administrations()
    assert [(d.id, d.at.strftime("%H:%M"), d.esketamine) for d in doses] == [
        ("period", "08:40", False), ("given", "09:40", True)]


def test_blood_pressures_keep_their_time_and_pair_split_readings() -> None:
    def obs(oid: str, code: str, value: float, at: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": oid, "status": "final", "effectiveDateTime": at,
                "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg"}}
    pool = ResourcePool()
    for res in (obs("s", "8480-6", 150, "2026-11-01T09:40:00Z"), obs("d", "8462-4", 95, "2026-11-01T09:40:00Z"),
                obs("s2", "8480-6", 500, "2026-11-01T10:40:00Z")):
        add_json(pool, res, "test")
    readings = SessionRecords(pool, "p").timed_blood_pressures()
    assert [(r.at.strftime("%H:%M"), r.systolic, r.diastolic) for r in readings] == [("09:40", 150, 95)]


def test_a_dose_whose_drug_cannot_be_read_is_unidentified_not_ignored() -> None:
    pool = ResourcePool()
    by_reference = {"resourceType": "MedicationAdministration", "id": "ref", "status": "completed",
                    "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": "Patient/p"},
                    "effectiveDateTime": "2026-11-01T09:40:00Z"}
    add_json(pool, by_reference, "test")
    assert SessionRecords(pool, "p").unidentified_administrations() == ["MedicationAdministration/ref"]
    assert SessionRecords(pool, "p").ketamine_administrations() == []
    add_json(pool, {"resourceType": "Medication", "id": "m1", "code": {"text": "Spravato 56 mg nasal spray"}}, "t")
    assert SessionRecords(pool, "p").unidentified_administrations() == []
    assert [d.id for d in SessionRecords(pool, "p").ketamine_administrations()] == ["ref"]


@pytest.mark.parametrize(("cls", "outpatient"), [
    ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, True),
    ({"code": "Ambulatory"}, True), ({"code": "x", "display": "Outpatient"}, True),
    ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}, False),
    ({"code": "inpatient"}, False), ({"code": "HOME-SOMETHING"}, None),
])
def test_the_encounter_class_says_outpatient_or_inpatient_in_codes_or_words(cls: dict[str, Any],
                                                                          outpatient: bool | None) -> None:
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "class": cls,
                    "subject": {"reference": "Patient/p"}}, "test")
    found = SessionRecords(pool, "p", "e1").encounter()
    assert found is not None and found.outpatient is outpatient


# -- validate before reading; hostile values are invalid entries, skipped and reported (issue 21 item 2) ----------
@pytest.mark.parametrize("status", [[], {}, ["completed"], 7, None])
def test_a_status_that_is_not_a_code_is_an_invalid_entry_never_a_crash(status: Any) -> None:
    pool = ResourcePool()
    for res in (_administration("d", "completed", {"text": "Spravato 56 mg"}, effectiveDateTime="2026-11-01T09:40Z")
                | {"status": status},
                {"resourceType": "Observation", "id": "o", "status": status, "subject": {"reference": "Patient/p"},
                 "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "effectiveDateTime": "2026-11-01T09:40:00Z", "valueQuantity": {"value": 150, "unit": "mmHg"}},
                appt(serviceType=[{"text": "Spravato"}], status=status, participant=[
                    {"actor": {"reference": "Patient/p"}, "status": "accepted"}])):
        add_json(pool, res, "test")
    records = SessionRecords(pool, "p")
    assert records.ketamine_administrations() == [] and records.timed_blood_pressures() == []
    assert records.booked_sessions(frozenset()) == [] and records.unidentified_administrations() == []
    assert records.left_out == LeftOut(invalid=3)


@pytest.mark.parametrize("at", ["9999-12-31T23:30:00Z", "0001-01-01T00:00:00+14:00", "1066-10-14T09:00:00Z"])
def test_a_date_the_rules_cannot_compute_with_is_skipped_and_reported(at: str) -> None:
    pool = ResourcePool()
    add_json(pool, _administration("d", "completed", {"text": "Spravato 56 mg"}, effectiveDateTime=at), "test")
    add_json(pool, appt(serviceType=[{"text": "Spravato"}], start=at, end=at, status="booked"), "test")
    records = SessionRecords(pool, "p")
    assert records.ketamine_administrations() == [] and records.booked_sessions(frozenset()) == []
    assert records.left_out == LeftOut(invalid=2)
    assert [s.reason for s in pool.skipped] == ["a date outside the years 1900-2999"] * 2
    assert parse_instant(at) is None


def test_a_slot_length_beyond_a_week_is_no_slot_length() -> None:
    long = appt(serviceType=[{"text": "Spravato"}], minutesDuration=2**31 - 1, start="9000-01-01T00:00:00Z")
    del long["end"]
    assert recognise(long).minutes is None


def test_records_of_another_patient_or_encounter_are_left_out_and_counted_once() -> None:
    pool = ResourcePool()
    for res in (
        _administration("mine", "completed", {"text": "Spravato"}, effectiveDateTime="2026-11-01T09:40:00Z",
                        context={"reference": "Encounter/e1"}),
        _administration("elsewhere", "completed", {"text": "Spravato"}, effectiveDateTime="2026-11-01T09:50:00Z",
                        context={"reference": "Encounter/e2"}),
        _administration("theirs", "completed", {"text": "Spravato"}, effectiveDateTime="2026-11-01T10:00:00Z")
        | {"subject": {"reference": "Patient/q"}},
        _administration("nobody", "completed", {"text": "Spravato"}, effectiveDateTime="2026-11-01T10:00:00Z")
        | {"subject": {}},
        {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": "https://ehr.example/fhir/Patient/q"}},
    ):
        add_json(pool, res, "test")
    records = SessionRecords(pool, "p", "e1")
    doses = records.ketamine_administrations()
    assert [(d.id, d.other_encounter) for d in doses] == [("mine", None), ("elsewhere", "Encounter/e2")]
    assert records.encounter() is None  # another patient's encounter, though it has the context's id
    records.ketamine_administrations()
    records.count_other_patients()
    assert records.left_out == LeftOut(other_patient=3)


def test_a_based_on_order_of_another_patient_does_not_make_a_session() -> None:
    pool = ResourcePool()
    add_json(pool, {"resourceType": "ServiceRequest", "id": "o1", "status": "active", "intent": "order",
                    "subject": {"reference": "Patient/q"}, "code": {"text": "Esketamine 84 mg"}}, "test")
    records = SessionRecords(pool, "p")
    found = records.appointment(appt(basedOn=[{"reference": "ServiceRequest/o1"}]), frozenset(), ResourcePool())
    assert found is not None and not found.is_session and records.left_out == LeftOut(other_patient=1)
    theirs_contained = appt(contained=[{"resourceType": "ServiceRequest", "id": "o", "status": "active",
                                        "intent": "order", "subject": {"reference": "Patient/q"},
                                        "code": {"text": "Esketamine"}}], basedOn=[{"reference": "#o"}])
    contained = SessionRecords(pool, "p").appointment(theirs_contained, frozenset(), ResourcePool())
    assert contained is not None and not contained.is_session

"""FHIR resources → clinical facts: medications to courses, observations, conditions, allergies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_mapping import (
    ClinicalStatus,
    DoseSource,
    Gender,
    MatchMethod,
    MedicationCategory,
    ObservationKind,
    ResourcePool,
    add_json,
    to_facts,
)

from ..conftest import load_bundle

PT = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1980-02-29"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def facts_of(*resources: dict[str, Any]):  # type: ignore[no-untyped-def]
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": r} for r in (PT, *resources)]}, "test")
    return to_facts(pool)


def statement(sid: str, concept: dict[str, Any], start: str, end: str | None, status: str = "completed",
              **extra: Any) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "MedicationStatement", "id": sid, "status": status, "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": concept, "effectivePeriod": period, **extra}


def mg(value: float) -> list[dict[str, Any]]:
    return [{"doseAndRate": [{"doseQuantity": {"value": value, "unit": "mg"}}],
             "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}]


SERTRALINE = {"coding": [{"system": RXNORM, "code": "36437", "display": "sertraline"}]}


def test_records_less_than_30_days_apart_merge_into_one_course_with_segments() -> None:
    f = facts_of(statement("a", SERTRALINE, "2025-01-01", "2025-02-01", dosage=mg(50)),
                 statement("b", SERTRALINE, "2025-03-01", "2025-04-15", dosage=mg(100)),
                 statement("c", SERTRALINE, "2025-06-01", "2025-07-01", dosage=mg(100)))
    assert len(f.courses) == 2
    first = f.courses[0]
    assert [s.daily_mg for s in first.segments] == [50, 100]
    assert first.evidence == ("MedicationStatement/a", "MedicationStatement/b")
    assert f.courses[1].start == dt.date(2025, 6, 1)


def test_entered_in_error_not_taken_and_cancelled_records_are_ignored() -> None:
    f = facts_of(statement("a", SERTRALINE, "2025-01-01", "2025-04-01", status="entered-in-error"),
                 statement("b", SERTRALINE, "2025-01-01", "2025-04-01", status="not-taken"),
                 {"resourceType": "MedicationRequest", "id": "r", "status": "cancelled", "intent": "order",
                  "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": SERTRALINE,
                  "authoredOn": "2025-01-01"})
    assert f.courses == ()


def test_medication_request_exposure_from_supply_and_repeats() -> None:
    f = facts_of({"resourceType": "MedicationRequest", "id": "r", "status": "completed", "intent": "order",
                  "subject": {"reference": "Patient/p"}, "authoredOn": "2025-01-01",
                  "medicationCodeableConcept": SERTRALINE, "dosageInstruction": mg(100),
                  "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"},
                                      "numberOfRepeatsAllowed": 2}})
    seg = f.courses[0].segments[0]
    assert (seg.start, seg.end, seg.daily_mg) == (dt.date(2025, 1, 1), dt.date(2025, 4, 1), 100)


def test_an_active_statement_without_end_is_ongoing_a_finished_one_has_no_duration() -> None:
    f = facts_of(statement("a", SERTRALINE, "2025-01-01", None, status="active", dosage=mg(100)),
                 statement("b", {"text": "escitalopram 10 mg"}, "2025-01-01", None, status="completed"))
    by = {c.ingredient: c for c in f.courses}
    assert by["sertraline"].ongoing
    assert by["escitalopram"].segments[0].end == dt.date(2025, 1, 1)
    assert by["escitalopram"].match_method is MatchMethod.NAME


def test_scd_tablets_contained_medication_and_atc() -> None:
    f = facts_of(
        {"resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p"}, "authoredOn": "2025-01-01",
         "contained": [{"resourceType": "Medication", "id": "m",
                        "code": {"coding": [{"system": RXNORM, "code": "312938"}]}}],
         "medicationReference": {"reference": "#m"},
         "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}],
                                "timing": {"code": {"coding": [{"code": "QD"}]}}}]},
        statement("s", {"coding": [{"system": "http://www.whocc.no/atc", "code": "N06AB10",
                                    "display": "escitalopram"}]}, "2024-01-01", "2024-03-01",
                  dosage=[{"text": "10 mg once daily"}]))
    by = {c.ingredient: c for c in f.courses}
    assert by["sertraline"].match_method is MatchMethod.RXNORM_CLINICAL_DRUG
    assert by["sertraline"].segments[0].daily_mg == 200  # 2 x 100 MG tablets
    assert by["sertraline"].segments[0].dose_source is DoseSource.STRUCTURED_UNITS_X_STRENGTH
    assert by["escitalopram"].match_method is MatchMethod.ATC_AND_NAME
    assert by["escitalopram"].segments[0].dose_source is DoseSource.TEXT


def test_medication_ingredient_strength_from_a_referenced_medication() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "Duloxetine DR capsule"},
           "ingredient": [{"itemCodeableConcept": {"text": "duloxetine"},
                           "strength": {"numerator": {"value": 30, "unit": "mg"},
                                        "denominator": {"value": 1, "unit": "capsule"}}}]}
    ms = statement("s", {}, "2025-01-01", "2025-03-01")
    del ms["medicationCodeableConcept"]
    ms["medicationReference"] = {"reference": "Medication/m1"}
    ms["dosage"] = [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "capsule"}}],
                     "timing": {"code": {"coding": [{"code": "QD"}]}}}]
    f = facts_of(med, ms)
    assert f.courses[0].ingredient == "duloxetine" and f.courses[0].segments[0].daily_mg == 60


def test_ketamine_stimulants_and_unknown_drugs_are_not_antidepressant_courses() -> None:
    f = facts_of(statement("k", {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-02"}],
                                 "text": "Spravato 56 mg kit"}, "2026-01-01", None, status="active"),
                 statement("m", {"text": "methylphenidate 10 mg"}, "2026-01-01", None, status="active"),
                 statement("x", {"text": "lisinopril 10 mg"}, "2026-01-01", None, status="active"))
    assert f.courses == ()
    assert [(m.category, m.evidence) for m in f.other_medications] == [("psychostimulant", "MedicationStatement/m")]
    assert [(k.reference, k.kind, k.product, k.active, k.end) for k in f.ketamine] == [
        ("MedicationStatement/k", "statement", "esketamine_nasal", True, None)]
    assert f.unmatched_medications == ("lisinopril 10 mg",)


def test_observations() -> None:
    loinc = "http://loinc.org"
    def obs(oid: str, code: str, status: str = "final", **value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": oid, "status": status, "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": loinc, "code": code}]},
                "effectiveDateTime": "2026-10-01T09:30:00-05:00", **value}
    f = facts_of(
        obs("phq", "44261-6", valueQuantity={"value": 18}),
        obs("prelim", "44261-6", status="preliminary", valueQuantity={"value": 3}),
        obs("bad", "44261-6", valueInteger=40),
        obs("sys", "8480-6", valueQuantity={"value": 150, "unit": "mm[Hg]"}),
        obs("dia", "8462-4", valueQuantity={"value": 95, "unit": "mm[Hg]"}),
        obs("hcg", "2106-3", valueCodeableConcept={"coding": [{"display": "Detected"}]}),
        obs("uds", "3397-7", valueCodeableConcept={"text": "Not detected"}),
        obs("pcp", "19659-2", interpretation=[{"coding": [{"code": "POS"}]}]),
    )
    assert [(s.kind, s.value) for s in f.scores] == [(ObservationKind.PHQ9_TOTAL, 18)]
    assert len(f.blood_pressures) == 1  # standalone systolic + diastolic at one instant: one reading
    assert (f.blood_pressures[0].systolic, f.blood_pressures[0].diastolic) == (150, 95)
    assert {(r.analyte, r.positive) for r in f.lab_results} == {
        ("hCG", True), ("cocaine", False), ("phencyclidine", True)}
    assert any("outside 0-27" in s.reason for s in f.skipped)


def test_conditions_and_allergies() -> None:
    f = to_facts(_pool("10"))
    bipolar = next(c for c in f.conditions if "bipolar" in c.concepts)
    assert bipolar.system == "SNOMEDCT" and bipolar.clinical_status is ClinicalStatus.ACTIVE
    f = to_facts(_pool("18"))
    assert f.allergies[0].substance == "esketamine"
    f = to_facts(_pool("23"))
    assert all("bipolar" not in c.concepts for c in f.conditions)  # refuted


def test_patient_demographics() -> None:
    f = facts_of()
    assert f.patient is not None and f.patient.gender is Gender.FEMALE
    assert f.patient.age_on(dt.date(2026, 2, 28)) == 45 and f.patient.age_on(dt.date(2026, 3, 1)) == 46


def _pool(name: str) -> ResourcePool:
    pool = ResourcePool()
    add_json(pool, load_bundle(name), name)
    return pool


def test_a_medication_is_current_from_its_start_to_its_end_inclusive() -> None:
    from fhir_mapping import CurrentMedication

    day = dt.date(2026, 11, 1)
    def med(start: dt.date | None, end: dt.date | None) -> CurrentMedication:
        return CurrentMedication("x", MedicationCategory.MAOI, start, end, "active", "MedicationStatement/x")
    assert med(day, None).is_current(day) and med(day - dt.timedelta(days=9), day).is_current(day)
    assert not med(day + dt.timedelta(days=1), None).is_current(day)
    assert not med(day - dt.timedelta(days=9), day - dt.timedelta(days=1)).is_current(day)
    assert not med(None, None).is_current(day)

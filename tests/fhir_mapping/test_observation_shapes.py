"""Observations where EHRs put them: PHQ-9 panels and questionnaires, split and repeated blood pressures, labs."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mapping import CodeSets, ObservationKind, ResourcePool, add_json, to_facts

LOINC = "http://loinc.org"
CS = CodeSets.load()


def facts_of(*resources: dict[str, Any]):  # type: ignore[no-untyped-def]
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": {"resourceType": "Patient", "id": "p", "gender": "female"}},
                              *({"resource": r} for r in resources)]}, "test")
    return to_facts(pool, "p")


def obs(oid: str, code: str, system: str = LOINC, day: str = "2026-10-20", **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": day, **value}


def test_phq9_total_as_a_component_of_the_panel() -> None:
    panel = obs("panel", "44249-1", component=[
        {"code": {"coding": [{"system": LOINC, "code": "44261-6"}]}, "valueInteger": 17},
        {"code": {"coding": [{"system": LOINC, "code": "44260-8"}]}, "valueInteger": 2}])
    scores = {(s.kind, s.value) for s in facts_of(panel).scores}
    assert scores == {(ObservationKind.PHQ9_TOTAL, 17), (ObservationKind.PHQ9_ITEM9, 2)}


def test_phq9_total_as_the_panels_own_value() -> None:
    (score,) = facts_of(obs("panel", "44249-1", valueInteger=14)).scores
    assert score.kind is ObservationKind.PHQ9_TOTAL and score.value == 14


def test_phq9_total_with_the_snomed_code() -> None:
    (score,) = facts_of(obs("s", "720433000", "http://snomed.info/sct", valueQuantity={"value": 12})).scores
    assert score.value == 12


def test_phq9_questionnaire_response_with_a_total() -> None:
    qr = {"resourceType": "QuestionnaireResponse", "id": "qr", "status": "completed",
          "subject": {"reference": "Patient/p"}, "questionnaire": "Questionnaire/phq-9", "authored": "2026-10-01",
          "item": [{"linkId": "section", "item": [{"linkId": "total", "text": "Total score",
                                                     "answer": [{"valueInteger": 22}]}]}]}
    (score,) = facts_of(qr).scores
    assert score.reference == "QuestionnaireResponse/qr" and score.value == 22


def test_blood_pressure_readings_on_one_day_count_as_one_the_lowest() -> None:
    def split(prefix: str, time: str, systolic: int, diastolic: int) -> list[dict[str, Any]]:
        return [obs(f"{prefix}s", "8459-0", day=f"2026-10-20T{time}Z", valueQuantity={"value": systolic}),
                obs(f"{prefix}d", "8453-3", day=f"2026-10-20T{time}Z", valueQuantity={"value": diastolic})]

    (reading,) = facts_of(*split("a", "09:00:00", 152, 84), *split("b", "09:20:00", 138, 92)).blood_pressures
    assert (reading.systolic, reading.diastolic, reading.readings) == (138, 84, 2)


def test_the_older_bp_panel() -> None:
    panel = obs("old", "55284-4", component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 141}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 91}}])
    (reading,) = facts_of(panel).blood_pressures
    assert (reading.systolic, reading.diastolic) == (141, 91)


@pytest.mark.parametrize("value,positive", [
    ({"valueString": "POSITIVE"}, True), ({"valueString": "Detected"}, True), ({"valueString": "negative"}, False),
    ({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}}, True),
    ({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260373001"}]}}, True),
    ({"valueCodeableConcept": {"text": "Not detected"}}, False),
])
def test_drug_screen_results(value: dict[str, Any], positive: bool) -> None:
    (lab,) = facts_of(obs("uds", "19359-9", **value)).lab_results
    assert lab.kind is ObservationKind.DRUG_SCREEN and lab.positive is positive and lab.interpretable


@pytest.mark.parametrize("extra,positive,interpretable", [
    ({"referenceRange": [{"high": {"value": 5}}]}, True, True),
    ({"referenceRange": [{"high": {"value": 5000}}]}, False, True),
    ({}, False, False),
    ({"interpretation": [{"coding": [{"code": "H"}]}]}, True, True),
])
def test_quantitative_hcg(extra: dict[str, Any], positive: bool, interpretable: bool) -> None:
    (lab,) = facts_of(obs("hcg", "21198-7", valueQuantity={"value": 1250}, **extra)).lab_results
    assert (lab.positive, lab.interpretable) == (positive, interpretable)


def test_pregnancy_status() -> None:
    pregnant = obs("ps", "82810-3", valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct",
                                                                      "code": "77386006"}]})
    not_pregnant = obs("ps2", "82810-3", valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct",
                                                                           "code": "60001007"}]})
    labs = facts_of(pregnant, not_pregnant).lab_results
    assert [(r.kind, r.positive) for r in labs] == [(ObservationKind.PREGNANCY_STATUS, True),
                                                    (ObservationKind.PREGNANCY_STATUS, False)]


@pytest.mark.parametrize("code,concept", [
    ("F10.90", "substance_use"), ("F12.90", "substance_use"), ("F10.91", None),
    ("F15.159", "psychosis"), ("F19.259", "psychosis"), ("F10.950", "psychosis"),
    ("I24.9", "myocardial_infarction"), ("I60.7", "subarachnoid_hemorrhage"),
])
def test_issue_12_codes(code: str, concept: str | None) -> None:
    found = CS.condition_concepts("http://hl7.org/fhir/sid/icd-10-cm", code)
    assert (concept in found) if concept else not found & {"substance_use"}


def test_a_text_only_problem_is_kept_for_confirmation() -> None:
    cond = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
            "code": {"text": "h/o schizoaffective disorder"}}
    (problem,) = facts_of(cond).free_text_problems
    assert problem.concept == "psychosis" and problem.text == "h/o schizoaffective disorder"

"""Ketamine/esketamine doses given or dispensed, read from FHIR as EHRs record them: the records of a course."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_mapping import DataDomain, ExposureKind, KetamineProduct, ResourcePool, add_json, to_facts
from fhir_mapping.facts import ClinicalFacts

PT = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1980-01-01"}
SPRAVATO = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-02"}], "text": "Spravato 56 mg"}
KETAMINE_IV = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}],
               "text": "ketamine 50 mg/mL injection"}


def facts_of(*resources: dict[str, Any]) -> ClinicalFacts:
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": r} for r in (PT, *resources)]}, "test")
    return to_facts(pool)


def administration(aid: str, when: str, status: str = "completed", concept: dict[str, Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "MedicationAdministration", "id": aid, "status": status,
                         "subject": {"reference": "Patient/p"}, "effectiveDateTime": when,
                         "dosage": {"dose": {"value": 56, "unit": "mg", "system": "http://unitsofmeasure.org",
                                             "code": "mg"}}, **extra}
    if "medicationReference" not in extra:
        r["medicationCodeableConcept"] = concept or SPRAVATO
    return r


def dispense(did: str, when: str, status: str = "completed") -> dict[str, Any]:
    return {"resourceType": "MedicationDispense", "id": did, "status": status, "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": SPRAVATO, "whenHandedOver": when}


def test_doses_given_are_read_with_their_day_product_and_mg() -> None:
    f = facts_of(administration("a1", "2026-10-22T09:30:00Z"), administration("a2", "2026-10-25T09:30:00-05:00"),
                 administration("iv", "2026-10-27T10:00:00Z", concept=KETAMINE_IV))
    assert [(k.reference, k.kind, k.product, k.start, k.dose_mg) for k in f.ketamine] == [
        ("MedicationAdministration/a1", ExposureKind.ADMINISTRATION, KetamineProduct.ESKETAMINE_NASAL,
         dt.date(2026, 10, 22), 56.0),
        ("MedicationAdministration/a2", ExposureKind.ADMINISTRATION, KetamineProduct.ESKETAMINE_NASAL,
         dt.date(2026, 10, 25), 56.0),
        ("MedicationAdministration/iv", ExposureKind.ADMINISTRATION, KetamineProduct.KETAMINE,
         dt.date(2026, 10, 27), 56.0)]
    assert f.courses == () and f.other_medications == ()  # never an antidepressant trial


def test_only_what_was_given_counts() -> None:
    f = facts_of(administration("done", "2026-10-22T09:30:00Z", status="not-done"),
                 administration("err", "2026-10-22T09:30:00Z", status="entered-in-error"),
                 dispense("declined", "2026-10-22T08:00:00Z", status="declined"),
                 dispense("ok", "2026-10-29T08:00:00Z"))
    assert [(k.reference, k.kind) for k in f.ketamine] == [("MedicationDispense/ok", ExposureKind.DISPENSE)]


def test_a_dose_whose_drug_cannot_be_read_leaves_the_course_unknown() -> None:
    f = facts_of(administration("x", "2026-10-22T09:30:00Z", medicationReference={"reference": "Medication/gone"}))
    assert f.ketamine == ()
    assert f.lacks(DataDomain.TREATMENT_COURSE) and not f.lacks(DataDomain.MEDICATIONS)


def test_another_drug_given_is_not_a_ketamine_dose() -> None:
    f = facts_of(administration("o", "2026-10-22T09:30:00Z", concept={"text": "ondansetron 4 mg"}))
    assert f.ketamine == () and not f.lacks(DataDomain.TREATMENT_COURSE)


def test_another_patients_doses_are_not_this_patients() -> None:
    other = administration("b", "2026-10-22T09:30:00Z")
    other["subject"] = {"reference": "Patient/q"}
    assert facts_of(administration("a", "2026-10-22T09:30:00Z"), other).ketamine[0].reference == \
        "MedicationAdministration/a"
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": r} for r in (PT, administration("a", "2026-10-22T09:30:00Z"), other)]},
             "test")
    assert [k.reference for k in to_facts(pool, "p").ketamine] == ["MedicationAdministration/a"]

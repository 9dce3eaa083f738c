"""The decisions issue #12 took for data as hospitals send it (docs/policies.md, "Real EHR data")."""

from __future__ import annotations

import dataclasses

import pytest

from eligibility import Adequacy, ContraindicationId, Criterion, Presence, assess, assess_contraindications, load_policy
from fhir_mapping import (
    ClinicalStatus,
    Course,
    DataDomain,
    DoseSegment,
    DoseSource,
    FreeTextProblem,
    GapReason,
    Gender,
    LabResultFact,
    MatchMethod,
    ObservationKind,
    PatientFact,
    ResourceType,
)

from .builders import AS_OF, ago, bp, condition, course, gap, hcg, patient, trd_candidate

DEFAULT = load_policy("default")
C = ContraindicationId


def finding(cid: ContraindicationId, **changes: object):  # type: ignore[no-untyped-def]
    return assess_contraindications(trd_candidate(**changes), DEFAULT, AS_OF)[cid]


# -- gaps per search, not per resource type ------------------------------------------------------------------

def test_a_failed_phq9_search_leaves_blood_pressure_decided() -> None:
    facts = trd_candidate(gaps=(gap(ResourceType.OBSERVATION, GapReason.TIMEOUT, DataDomain.PHQ9),))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.severity.status is Criterion.UNKNOWN
    assert a.contraindications[C.UNCONTROLLED_HYPERTENSION].status is Presence.ABSENT


def test_a_failed_bp_search_is_unknown_even_with_readings_that_arrived() -> None:
    bp_gap = gap(ResourceType.OBSERVATION, GapReason.MALFORMED, DataDomain.BLOOD_PRESSURE)
    f = finding(C.UNCONTROLLED_HYPERTENSION, gaps=(bp_gap,))
    assert f.status is Presence.UNKNOWN and "recheck" in f.explanation
    assert assess(trd_candidate(gaps=(bp_gap,)), DEFAULT, AS_OF).severity.status is Criterion.MET


def test_evidence_that_makes_bp_present_wins_over_an_incomplete_search() -> None:
    bp_gap = gap(ResourceType.OBSERVATION, GapReason.MALFORMED, DataDomain.BLOOD_PRESSURE)
    assert finding(C.UNCONTROLLED_HYPERTENSION, blood_pressures=(bp(30, 150, 95), bp(5, 152, 96)),
                   gaps=(bp_gap,)).status is Presence.PRESENT
    assert finding(C.UNCONTROLLED_HYPERTENSION, blood_pressures=(bp(5, 190, 100),),
                   gaps=(bp_gap,)).status is Presence.PRESENT


def test_latest_bp_above_the_limit_alone_is_unknown_recheck() -> None:
    f = finding(C.UNCONTROLLED_HYPERTENSION, blood_pressures=(bp(60, 130, 80), bp(5, 150, 92)))
    assert f.status is Presence.UNKNOWN and "recheck BP" in f.explanation


# -- pregnancy ----------------------------------------------------------------------------------------------

def status_obs(day: int, pregnant: bool) -> LabResultFact:
    return LabResultFact(f"ps{day}", ObservationKind.PREGNANCY_STATUS, "pregnancy status", "82810-3", ago(day),
                         pregnant)


def test_pregnancy_status_saying_pregnant_within_280_days_is_present() -> None:
    assert finding(C.PREGNANCY, lab_results=(status_obs(200, True),)).status is Presence.PRESENT
    assert finding(C.PREGNANCY, lab_results=(status_obs(281, True),)).status is Presence.ABSENT


def test_a_later_negative_test_overrides_the_pregnancy_status() -> None:
    assert finding(C.PREGNANCY, lab_results=(status_obs(20, True), hcg(5, False))).status is Presence.ABSENT


def test_the_latest_test_in_the_window_decides() -> None:
    assert finding(C.PREGNANCY, lab_results=(hcg(20, True), hcg(5, False))).status is Presence.ABSENT
    assert finding(C.PREGNANCY, lab_results=(hcg(20, False), hcg(5, True))).status is Presence.PRESENT


def test_an_uninterpretable_quantitative_hcg_is_listed_not_counted() -> None:
    raw = dataclasses.replace(hcg(5, False), interpretable=False)
    f = finding(C.PREGNANCY, lab_results=(raw,))
    assert f.status is Presence.UNKNOWN and f.evidence[0].reference == raw.reference


def test_a_pregnancy_condition_without_clinical_status_counts_only_for_280_days() -> None:
    recent = condition("pregnancy", status=ClinicalStatus.UNSPECIFIED, onset=100, cid="preg")
    old = condition("pregnancy", status=ClinicalStatus.UNSPECIFIED, onset=400, cid="preg")
    assert finding(C.PREGNANCY, conditions=(condition("major_depression"), recent)).status is Presence.PRESENT
    assert finding(C.PREGNANCY, conditions=(condition("major_depression"), old)).status is Presence.ABSENT


@pytest.mark.parametrize("gender", [Gender.UNKNOWN, Gender.OTHER, None])
def test_pregnancy_applies_when_gender_is_unknown_other_or_there_is_no_patient(gender: Gender | None) -> None:
    who: PatientFact | None = None if gender is None else patient(gender)
    assert finding(C.PREGNANCY, patient=who, lab_results=(hcg(5, True),)).status is Presence.PRESENT
    assert finding(C.PREGNANCY, patient=patient(Gender.MALE), lab_results=(hcg(5, True),)).status is \
        Presence.ABSENT


# -- text-only problems, subarachnoid hemorrhage, conditions with no status --------------------------------

@pytest.mark.parametrize("cid,concept", [
    (C.BIPOLAR, "bipolar"), (C.PSYCHOSIS, "psychosis"), (C.ANEURYSM_OR_AVM, "aneurysm_or_avm"),
    (C.INTRACEREBRAL_HEMORRHAGE, "intracerebral_hemorrhage"), (C.SUBSTANCE_USE, "substance_use"),
    (C.PREGNANCY, "pregnancy"), (C.CARDIOVASCULAR_DISEASE, "heart_failure"),
])
def test_a_free_text_problem_is_unknown_confirm_never_absent(cid: ContraindicationId, concept: str) -> None:
    problem = FreeTextProblem("ft1", "something the clinician typed", concept, ago(100))
    f = finding(cid, free_text_problems=(problem,))
    assert f.status is Presence.UNKNOWN and "confirm" in f.explanation
    assert f.evidence[0].reference == "Condition/ft1"


def test_subarachnoid_hemorrhage_makes_aneurysm_unknown_for_review() -> None:
    sah = condition("subarachnoid_hemorrhage", status=ClinicalStatus.RESOLVED, cid="sah")
    f = finding(C.ANEURYSM_OR_AVM, conditions=(condition("major_depression"), sah))
    assert f.status is Presence.UNKNOWN and "review: subarachnoid hemorrhage" in f.explanation
    assert finding(C.INTRACEREBRAL_HEMORRHAGE, conditions=(condition("major_depression"), sah)).status is \
        Presence.ABSENT


def test_a_condition_without_clinical_status_is_taken_as_active() -> None:
    undated = condition("heart_failure", status=ClinicalStatus.UNSPECIFIED, cid="hf")
    f = finding(C.CARDIOVASCULAR_DISEASE, conditions=(condition("major_depression"), undated))
    assert f.status is Presence.PRESENT and "no status" in f.evidence[0].description


# -- courses of unknown length -----------------------------------------------------------------------------

def _point(ingredient: str, day: int, mg: float) -> Course:
    return Course(ingredient, "SSRI", MatchMethod.RXNORM_CLINICAL_DRUG,
                  (DoseSegment(ago(day), ago(day), mg, DoseSource.TEXT, "MedicationRequest/x", False),))


def test_a_single_dated_record_is_a_course_of_unknown_length() -> None:
    facts = trd_candidate(courses=(course("sertraline", 420, 330, 150), _point("escitalopram", 200, 20)))
    a = assess(facts, DEFAULT, AS_OF)
    trial = a.treatment_resistance.trials[1]
    assert trial.adequacy is Adequacy.UNKNOWN and trial.duration_unknown
    assert any(w.kind.value == "trial_duration" for w in a.workup)
    assert a.treatment_resistance.status is Criterion.UNKNOWN


def test_a_single_dated_record_below_the_floor_is_inadequate() -> None:
    facts = trd_candidate(courses=(course("sertraline", 420, 330, 150), _point("escitalopram", 200, 5)))
    assert assess(facts, DEFAULT, AS_OF).treatment_resistance.trials[1].adequacy is Adequacy.INADEQUATE

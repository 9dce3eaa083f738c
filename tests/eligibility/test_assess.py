"""The verdict: how depression, treatment resistance, severity and contraindications combine."""

from __future__ import annotations

from eligibility import ContraindicationId, Criterion, Presence, Verdict, WarningId, assess, load_policy
from fhir_mapping import ClinicalStatus, GapReason, ResourceType

from .builders import AS_OF, bp, condition, course, gap, item9, phq9, trd_candidate

DEFAULT = load_policy("default")


def test_a_patient_meeting_every_criterion_is_a_candidate() -> None:
    a = assess(trd_candidate(), DEFAULT, AS_OF)
    assert a.verdict is Verdict.CANDIDATE
    assert a.treatment_resistance.status is Criterion.MET
    assert a.treatment_resistance.failed_adequate_trials == 2
    assert all(f.status is Presence.ABSENT for f in a.contraindications.values())
    assert a.reasons[0].code == "candidate"


def test_no_depression_diagnosis_is_not_indicated() -> None:
    a = assess(trd_candidate(conditions=()), DEFAULT, AS_OF)
    assert a.verdict is Verdict.NOT_INDICATED
    assert [r.code for r in a.reasons] == ["depression_absent"]


def test_anxiety_alone_is_not_an_indication() -> None:
    a = assess(trd_candidate(conditions=(condition("anxiety"),)), DEFAULT, AS_OF)
    assert a.verdict is Verdict.NOT_INDICATED
    assert a.reasons[0].code == "anxiety_without_depression"


def test_resolved_depression_does_not_count_but_unspecified_status_does() -> None:
    resolved = trd_candidate(conditions=(condition("major_depression", status=ClinicalStatus.RESOLVED),))
    assert assess(resolved, DEFAULT, AS_OF).depression.status is Presence.ABSENT
    unspecified = trd_candidate(conditions=(condition("major_depression", status=ClinicalStatus.UNSPECIFIED),))
    assert assess(unspecified, DEFAULT, AS_OF).depression.status is Presence.PRESENT


def test_conditions_that_could_not_be_fetched_make_depression_unknown_never_absent() -> None:
    a = assess(trd_candidate(conditions=(), gaps=(gap(ResourceType.CONDITION),)), DEFAULT, AS_OF)
    assert a.depression.status is Presence.UNKNOWN
    assert a.contraindications["psychosis"].status is Presence.UNKNOWN  # type: ignore[index]
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert any("Condition could not be obtained (timeout)" in g for g in a.data_gaps)


def test_a_contraindication_outranks_everything_else() -> None:
    facts = trd_candidate(conditions=(condition("anxiety"), condition("bipolar", cid="c2")))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.verdict is Verdict.CONTRAINDICATED
    assert a.reasons[0].code == "contraindication:bipolar"


def test_severity_uses_the_latest_phq9_within_30_days() -> None:
    facts = trd_candidate(scores=(phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18),
                                  phq9(25, 22), phq9(5, 9)))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.severity.status is Criterion.NOT_MET
    assert a.severity.phq9 is not None and a.severity.phq9.value == 9
    assert a.verdict is Verdict.NOT_INDICATED


def test_severity_without_a_recent_phq9_is_unknown_and_asks_for_one() -> None:
    facts = trd_candidate(scores=(phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18), phq9(31, 20)))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.severity.status is Criterion.UNKNOWN
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert a.workup[0].kind == "phq9" and a.workup[0].required


def test_va_policy_requires_phq9_of_15() -> None:
    facts = trd_candidate(scores=(phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18), phq9(5, 14)))
    assert assess(facts, DEFAULT, AS_OF).severity.status is Criterion.MET
    assert assess(facts, load_policy("va-iv-ketamine"), AS_OF).severity.status is Criterion.NOT_MET


def test_label_policy_turns_psychosis_into_a_caution_but_keeps_aneurysm_absolute() -> None:
    label = load_policy("esketamine-us-label")
    psychosis = trd_candidate(conditions=(condition("major_depression"), condition("psychosis", cid="c2")))
    a = assess(psychosis, label, AS_OF)
    assert a.verdict is Verdict.CANDIDATE
    assert any(w.id is WarningId.CAUTION and w.contraindication is ContraindicationId.PSYCHOSIS for w in a.warnings)
    assert "caution_psychosis" in {w.code for w in a.warnings}  # the JSON interface keeps its ids
    aneurysm = trd_candidate(conditions=(condition("major_depression"), condition("aneurysm_or_avm", cid="c2")))
    assert assess(aneurysm, label, AS_OF).verdict is Verdict.CONTRAINDICATED


def test_warnings_for_item9_current_maoi_and_age() -> None:
    from fhir_mapping import CurrentMedication, Gender, MedicationCategory

    from .builders import ago, patient

    facts = trd_candidate(
        patient=patient(Gender.MALE, born="1956-05-05"),
        scores=(*trd_candidate().scores, item9(12, 2)),
        other_medications=(
            CurrentMedication("phenelzine", MedicationCategory.MAOI, ago(100), None, "active", "MedicationStatement/x"),
            CurrentMedication("methylphenidate", MedicationCategory.PSYCHOSTIMULANT, ago(400), ago(300), "completed",
                              "MedicationStatement/y")),
    )
    ids = [w.id for w in assess(facts, DEFAULT, AS_OF).warnings]
    assert ids == ["suicide_risk_review", "bp_monitoring_maoi", "older_adult"]  # the stimulant ended long ago


def test_drug_screen_and_pregnancy_test_are_suggested_not_required() -> None:
    a = assess(trd_candidate(lab_results=()), DEFAULT, AS_OF)
    assert a.verdict is Verdict.CANDIDATE
    suggested = {w.kind.value: w.required for w in a.workup}
    assert suggested == {"drug_screen": False, "pregnancy_test": False}


def test_every_gap_is_listed_with_what_to_do() -> None:
    facts = trd_candidate(gaps=(gap(ResourceType.ALLERGY_INTOLERANCE, GapReason.FORBIDDEN),))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.contraindications["ketamine_hypersensitivity"].status is Presence.UNKNOWN  # type: ignore[index]
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert any(w.kind.value == "data" and "Allergies could not be obtained: access was not granted" in w.text
               for w in a.workup)


def test_course_and_bp_builders_sanity() -> None:
    # Guards the builders themselves: an unchanged candidate must keep two trials and two readings.
    facts = trd_candidate()
    assert len(facts.courses) == 2 and len(facts.blood_pressures) == 2
    assert course("x", 10, None, None).ongoing
    assert bp(1, 120, 80).reference == "Observation/bp1"

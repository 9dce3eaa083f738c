"""What the assessment says, word for word, where no fixture chart reaches: the work-up for a trial of unknown dose,
the warnings with their evidence, the reasons when data is missing, and the edges of the windows."""

from __future__ import annotations

import datetime as dt

import pytest

from eligibility import (
    Adequacy,
    ContraindicationId,
    Evidence,
    Presence,
    Warning,
    WarningId,
    WorkupItem,
    WorkupKind,
    assess,
    assess_contraindications,
    available_policies,
    load_policy,
    parse_policy,
)
from eligibility.policy import PolicyError
from fhir_mapping import (
    ClinicalStatus,
    CurrentMedication,
    Gender,
    LabResultFact,
    MedicationCategory,
    ObservationKind,
    ResourceType,
)

from .builders import AS_OF, ago, bp, condition, course, gap, hcg, item9, screen, trd_candidate

DEFAULT = load_policy("default")
C = ContraindicationId


@pytest.mark.parametrize("policy_id", available_policies())
def test_every_finding_and_rule_names_its_own_contraindication(policy_id: str) -> None:
    policy = load_policy(policy_id)
    a = assess(trd_candidate(gaps=(gap(ResourceType.CONDITION),)), policy, AS_OF)
    assert all(f.id is cid and f.mode is policy.contraindications[cid].mode for cid, f in a.contraindications.items())
    assert all(rule.id is cid for cid, rule in policy.contraindications.items())
    findings = assess_contraindications(trd_candidate(), policy, AS_OF)
    assert all(f.id is cid for cid, f in findings.items())


def test_a_trial_of_unknown_dose_asks_for_the_dose_with_its_dates() -> None:
    facts = trd_candidate(courses=(course("sertraline", 420, 330, None), course("escitalopram", 300, 215, 20)))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.workup[0] == WorkupItem(WorkupKind.TRIAL_DOSE, "Document the daily dose of the sertraline trial "
                                                            f"({ago(420).isoformat()} to {ago(330).isoformat()})",
                                     True)


def test_an_adequate_trial_without_a_baseline_asks_for_the_response() -> None:
    facts = trd_candidate(scores=(trd_candidate().scores[1:]))
    item = next(w for w in assess(facts, DEFAULT, AS_OF).workup if w.kind is WorkupKind.TRIAL_RESPONSE)
    assert item == WorkupItem(WorkupKind.TRIAL_RESPONSE,
                              "Document the response to sertraline: no baseline PHQ-9 on record", True)


def test_the_warnings_word_for_word_with_their_evidence() -> None:
    facts = trd_candidate(
        patient=trd_candidate().patient,
        scores=(*trd_candidate().scores, item9(12, 2)),
        other_medications=(
            CurrentMedication("phenelzine", MedicationCategory.MAOI, ago(100), None, "active", "MedicationStatement/m"),
            CurrentMedication("methylphenidate", MedicationCategory.PSYCHOSTIMULANT, ago(50), None, "active",
                              "MedicationStatement/s"),
        ))
    assert assess(facts, DEFAULT, AS_OF).warnings == (
        Warning(WarningId.SUICIDE_RISK_REVIEW, f"PHQ-9 item 9 = 2 on {ago(12).isoformat()}: suicide-risk review "
                                               "(e.g. C-SSRS) before proceeding",
                (Evidence("Observation/i9-12", "PHQ-9 item 9 = 2", ago(12)),)),
        Warning(WarningId.BP_MONITORING_MAOI, "Current phenelzine (an MAOI): monitor blood pressure closely",
                (Evidence("MedicationStatement/m", "phenelzine", ago(100)),)),
        Warning(WarningId.BP_MONITORING_PSYCHOSTIMULANT,
                "Current methylphenidate (a psychostimulant): monitor blood pressure closely",
                (Evidence("MedicationStatement/s", "methylphenidate", ago(50)),)),
    )


@pytest.mark.parametrize(("drug_class", "kind"), [
    ("benzodiazepine", "a benzodiazepine"), ("z_drug", "a Z-drug hypnotic"), ("opioid", "an opioid"),
    ("", "a CNS depressant"), ("barbiturate", "a CNS depressant")])
def test_a_current_cns_depressant_warns_of_more_sedation_named_by_its_class(drug_class: str, kind: str) -> None:
    # A medication that ended before today, listed first, does not stop the ones after it from being read.
    facts = trd_candidate(other_medications=(
        CurrentMedication("lorazepam", MedicationCategory.CNS_DEPRESSANT, ago(300), ago(200), "stopped",
                          "MedicationStatement/old", "benzodiazepine"),
        CurrentMedication("drug x", MedicationCategory.CNS_DEPRESSANT, ago(40), None, "active",
                          "MedicationStatement/x", drug_class)))
    assert assess(facts, DEFAULT, AS_OF).warnings == (
        Warning(WarningId.CNS_DEPRESSANT_SEDATION, f"Current drug x ({kind}): CNS depressants increase the sedation "
                "of esketamine; monitor for sedation (label §7.1)",
                (Evidence("MedicationStatement/x", "drug x", ago(40)),)),)


def test_an_item9_on_the_first_day_of_the_window_counts() -> None:
    window = DEFAULT.thresholds.severity_window_days
    for day, warned in ((window, True), (window + 1, False)):
        facts = trd_candidate(scores=(*trd_candidate().scores, item9(day, 2)))
        assert (WarningId.SUICIDE_RISK_REVIEW in {w.id for w in assess(facts, DEFAULT, AS_OF).warnings}) is warned


def test_the_reasons_when_the_conditions_could_not_be_fetched() -> None:
    a = assess(trd_candidate(conditions=(), gaps=(gap(ResourceType.CONDITION),)), DEFAULT, AS_OF)
    assert [(r.code, r.text) for r in a.reasons][:2] == [
        ("unknown:depression", "Depression diagnosis unknown: conditions could not be fetched"),
        ("unknown:psychosis", "Psychotic disorder unknown: data could not be fetched"),
    ]


def test_depression_absent_is_said_so() -> None:
    a = assess(trd_candidate(conditions=()), DEFAULT, AS_OF)
    assert [(r.code, r.text) for r in a.reasons] == [("depression_absent",
                                                      "No active major depressive disorder on record")]
    assert a.depression.anxiety_evidence == ()
    anxious = assess(trd_candidate(conditions=(condition("anxiety"),)), DEFAULT, AS_OF)
    assert anxious.depression.anxiety_evidence[0].reference == "Condition/c1"
    assert assess(trd_candidate(), DEFAULT, AS_OF).depression.anxiety_evidence == ()


def test_the_patient_reference() -> None:
    from dataclasses import replace

    facts = trd_candidate()
    assert assess(facts, DEFAULT, AS_OF).patient == "Patient/p1"
    assert assess(replace(facts, patient_id=None), DEFAULT, AS_OF).patient == "Patient/p1"
    assert assess(replace(facts, patient_id=None, patient=None), DEFAULT, AS_OF).patient == "Patient/unknown"


def test_screen_and_pregnancy_test_on_the_first_day_of_their_windows_need_no_work_up() -> None:
    t = DEFAULT.thresholds

    def kinds(*labs: LabResultFact) -> set[WorkupKind]:
        return {w.kind for w in assess(trd_candidate(lab_results=labs), DEFAULT, AS_OF).workup}

    assert WorkupKind.DRUG_SCREEN not in kinds(screen(t.drug_screen_window_days, False), hcg(5, False))
    assert WorkupKind.DRUG_SCREEN in kinds(screen(t.drug_screen_window_days + 1, False), hcg(5, False))
    assert WorkupKind.PREGNANCY_TEST not in kinds(screen(5, False), hcg(t.pregnancy_test_window_days, False))
    assert WorkupKind.PREGNANCY_TEST in kinds(screen(5, False), hcg(t.pregnancy_test_window_days + 1, False))


def test_blood_pressure_explanations_word_for_word() -> None:
    def finding(*readings: tuple[int, float, float]):  # type: ignore[no-untyped-def]
        facts = trd_candidate(blood_pressures=tuple(bp(d, s, di) for d, s, di in readings))
        return assess_contraindications(facts, DEFAULT, AS_OF)[C.UNCONTROLLED_HYPERTENSION]

    severe = finding((5, 182.5, 90))
    assert (severe.explanation, severe.evidence[0].description) == ("latest reading at or above 180/110",
                                                                    "BP 182.5/90 mmHg")
    assert finding((5, 150, 95)).explanation == "a single elevated reading: recheck BP"
    assert finding((40, 120, 80), (5, 150, 95)).explanation == ("latest reading elevated and the only elevated "
                                                               "reading in the window: recheck BP")
    many = finding(*((d, 150, 95) for d in (80, 70, 60, 50, 40, 5)))
    assert many.status is Presence.PRESENT and len(many.evidence) == 4  # the latest and three before it
    assert many.explanation == "latest and 5 earlier readings above 140/90"
    assert finding((40, 150, 95), (5, 150, 95)).explanation == "latest and 1 earlier reading above 140/90"
    assert finding().explanation == "no blood pressure reading in the last 90 days"
    low = finding((5, 120, 80))
    assert low.explanation == "latest reading at or below 140/90" and low.evidence[0].day == ago(5)


def test_an_mi_without_an_onset_date_asks_when_it_was() -> None:
    undated = condition("myocardial_infarction", onset=None, recorded=10, cid="mi")
    f = assess_contraindications(trd_candidate(conditions=(condition("major_depression"), undated)), DEFAULT,
                                 AS_OF)[C.CARDIOVASCULAR_DISEASE]
    assert f.status is Presence.UNKNOWN and f.evidence[0].reference == "Condition/mi"
    assert f.explanation == "myocardial infarction without an onset date: was it within 42 days?"
    recorded_on_the_edge = condition("myocardial_infarction", onset=None, recorded=42, cid="mi")
    edge = assess_contraindications(trd_candidate(conditions=(condition("major_depression"), recorded_on_the_edge)),
                                    DEFAULT, AS_OF)[C.CARDIOVASCULAR_DISEASE]
    assert edge.status is Presence.UNKNOWN


@pytest.mark.parametrize("concept", ["heart_failure", "myocardial_infarction", "unstable_angina"])
def test_free_text_cardiac_problems_are_confirmed(concept: str) -> None:
    from fhir_mapping import FreeTextProblem

    f = assess_contraindications(trd_candidate(free_text_problems=(FreeTextProblem("t", "typed", concept, None),)),
                                 DEFAULT, AS_OF)[C.CARDIOVASCULAR_DISEASE]
    assert f.status is Presence.UNKNOWN and f.explanation == "free-text problem 'typed' — confirm"


def test_free_text_subarachnoid_hemorrhage_is_reviewed_as_an_aneurysm() -> None:
    from fhir_mapping import FreeTextProblem

    problem = FreeTextProblem("t", "SAH 2019", "subarachnoid_hemorrhage", None)
    f = assess_contraindications(trd_candidate(free_text_problems=(problem,)), DEFAULT, AS_OF)[C.ANEURYSM_OR_AVM]
    assert f.status is Presence.UNKNOWN and f.evidence[0].reference == "Condition/t"


def test_pregnancy_edges() -> None:
    days = DEFAULT.thresholds.pregnancy_lookback_days

    def status(**changes: object) -> Presence:
        return assess_contraindications(trd_candidate(**changes), DEFAULT, AS_OF)[C.PREGNANCY].status

    def no_status(onset: int) -> object:
        return condition("pregnancy", status=ClinicalStatus.UNSPECIFIED, onset=onset, cid="pg")

    assert status(conditions=(condition("major_depression"), no_status(days))) is Presence.PRESENT
    assert status(conditions=(condition("major_depression"), no_status(0))) is Presence.PRESENT
    assert status(conditions=(condition("major_depression"), no_status(-1))) is Presence.ABSENT
    pregnant = LabResultFact("ps", ObservationKind.PREGNANCY_STATUS, "status", "82810-3", ago(10), True)
    same_day_negative = hcg(10, False)
    assert status(lab_results=(pregnant, same_day_negative)) is Presence.PRESENT  # only a later test overrides
    assert status(lab_results=(dataclass_replace(pregnant, day=AS_OF),)) is Presence.PRESENT
    male = trd_candidate().patient
    assert male is not None
    f = assess_contraindications(trd_candidate(patient=dataclass_replace(male, gender=Gender.MALE),
                                               gaps=(gap(ResourceType.OBSERVATION),)), DEFAULT, AS_OF)[C.PREGNANCY]
    assert (f.status, f.explanation) == (Presence.ABSENT, "male patient")
    raw = dataclass_replace(hcg(3, False), interpretable=False)
    unreadable = assess_contraindications(trd_candidate(lab_results=(raw,)), DEFAULT, AS_OF)[C.PREGNANCY]
    assert unreadable.evidence[0] == Evidence("Observation/hcg3", "pregnancy test (LOINC 2106-3) without "
                                                                  "interpretation or reference range — review", ago(3))
    readable_later = assessment_pregnancy(raw, hcg(1, False))
    assert readable_later.status is Presence.ABSENT  # a readable test decides; the unreadable one is not listed


def assessment_pregnancy(*labs: LabResultFact):  # type: ignore[no-untyped-def]
    return assess_contraindications(trd_candidate(lab_results=labs), DEFAULT, AS_OF)[C.PREGNANCY]


def dataclass_replace(obj: object, **changes: object) -> object:
    from dataclasses import replace

    return replace(obj, **changes)  # type: ignore[type-var]


def test_a_policy_that_extends_itself_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"mine: policies extend each other in a cycle \(default -> default\)"):
        parse_policy('id = "default"\nextends = "default"\n', "mine")


def test_a_minimal_policy_names_itself_and_takes_the_defaults_for_its_words() -> None:
    from eligibility.policy import _text

    text = "\n".join(line for line in _text("default.toml").splitlines()
                     if not line.startswith(("id =", "title =", "product =")))
    text = text.split('summary = """')[0] + text.split('BP, PHQ-9 and medication history must be on record."""')[1]
    policy = parse_policy(text, "site")
    assert (policy.id, policy.title, policy.summary, policy.product) == ("site", "site", "", "ketamine or esketamine")


def test_unknown_sources_are_listed() -> None:
    from eligibility.policy import _text

    text = _text("default.toml").replace('source = ["S32"]', 'source = ["S998", "S999"]', 1)
    with pytest.raises(PolicyError, match="unknown source S998, S999"):
        parse_policy(text, "broken")
    missing = _text("default.toml").replace("[thresholds.recent_mi_days]", "[thresholds.x]", 1).replace(
        "[thresholds.older_adult_age]", "[thresholds.y]", 1)
    with pytest.raises(PolicyError, match="thresholds missing: recent_mi_days, older_adult_age"):
        parse_policy(missing, "broken")


def test_citations_default_to_unverified_without_a_note() -> None:
    from eligibility.policy import _text

    text = _text("default.toml").replace(
        'value = 10\nsource = ["S32"]\nverified = true\nnote = "PHQ-9 >= 10 is moderate depression (sens./spec. 88 % '
        'for MDD)"', 'value = 10\nsource = ["S32"]', 1)
    citation = parse_policy(text, "x").cite("severity_phq9_min")
    assert citation.verified is False and citation.note == ""
    assert load_policy("default").cite("severity_phq9_min").note.startswith("PHQ-9 >= 10")


def test_the_observation_horizon_is_the_earliest_day_any_rule_reads() -> None:
    policy = load_policy("default")
    as_of = dt.date(2026, 11, 1)
    assert policy.observation_horizon(as_of) < as_of - dt.timedelta(days=policy.thresholds.bp_window_days)


def test_trial_notes_say_what_is_missing() -> None:
    from fhir_mapping import Course, DoseSegment, DoseSource, MatchMethod

    def notes(*segments: DoseSegment, ingredient: str = "sertraline") -> tuple[tuple[str, ...], object]:
        c = Course(ingredient, course("x", 1, 0, 1).drug_class, MatchMethod.NAME, segments)
        (t,) = assess(trd_candidate(courses=(c,)), DEFAULT, AS_OF).treatment_resistance.trials
        return t.notes, t.adequacy

    unknown = DoseSegment(ago(300), ago(200), None, DoseSource.NONE, "MedicationStatement/u")
    known = DoseSegment(ago(200), ago(190), 150, DoseSource.STRUCTURED, "MedicationStatement/k", True, True)
    assert notes(unknown, known) == (("dose not documented for part of the course",
                                      "some records carry no usable dose",
                                      "a dose without any frequency was read as once daily"), Adequacy.UNKNOWN)
    assert notes(known, ingredient="esketamine")[0] == ("no adequate-dose floor for esketamine in the policy",
                                                         "a dose without any frequency was read as once daily")
    point = DoseSegment(ago(300), ago(300), 150, DoseSource.TEXT, "MedicationRequest/p", False)
    assert notes(point) == (("how long the drug was taken is not documented",), Adequacy.UNKNOWN)
    future = DoseSegment(AS_OF, AS_OF, 150, DoseSource.TEXT, "MedicationRequest/f", False)
    assert notes(future)[1] is Adequacy.UNKNOWN  # prescribed today, length open

"""Every threshold of every shipped policy, read from the loaded policy and checked at its value and one step either
side: a threshold moved by one, or a ``>=`` turned into ``>``, fails here."""

from __future__ import annotations

import datetime as dt

import pytest

from eligibility import (
    Adequacy,
    ContraindicationId,
    Criterion,
    Outcome,
    Policy,
    Presence,
    WarningId,
    assess,
    assess_contraindications,
    available_policies,
    load_policy,
)
from eligibility.dates import months_before
from fhir_mapping import ClinicalStatus, Course, DoseSegment, DoseSource, Gender

from .builders import AS_OF, ago, bp, condition, course, hcg, item9, patient, phq9, screen, trd_candidate

POLICIES = [load_policy(p) for p in available_policies()]
C = ContraindicationId


@pytest.fixture(params=POLICIES, ids=lambda p: p.id)
def policy(request: pytest.FixtureRequest) -> Policy:
    return request.param  # type: ignore[no-any-return]


TRIAL_SCORES = (phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18))


def severity(policy: Policy, value: float, day: int = 12) -> Criterion:
    facts = trd_candidate(scores=(*TRIAL_SCORES, phq9(day, value)))
    return assess(facts, policy, AS_OF).severity.status


def test_severity_phq9_min(policy: Policy) -> None:
    t = policy.thresholds.severity_phq9_min
    assert severity(policy, t) is Criterion.MET
    assert severity(policy, t - 1) is Criterion.NOT_MET
    assert severity(policy, t + 1) is Criterion.MET


def test_severity_window_days(policy: Policy) -> None:
    w = policy.thresholds.severity_window_days
    assert severity(policy, 20, day=w) is Criterion.MET
    assert severity(policy, 20, day=w + 1) is Criterion.UNKNOWN


def bp_status(policy: Policy, *readings: tuple[int, float, float]) -> Presence:
    facts = trd_candidate(blood_pressures=tuple(bp(d, s, di) for d, s, di in readings))
    return assess_contraindications(facts, policy, AS_OF)[C.UNCONTROLLED_HYPERTENSION].status


def test_blood_pressure_limits(policy: Policy) -> None:
    t = policy.thresholds
    s, d = t.bp_systolic_above, t.bp_diastolic_above
    assert bp_status(policy, (30, s, d), (5, s, d)) is Presence.ABSENT  # at the limit is not above it
    assert bp_status(policy, (30, s + 1, d), (5, s + 1, d)) is Presence.PRESENT
    assert bp_status(policy, (30, s, d + 1), (5, s, d + 1)) is Presence.PRESENT
    assert bp_status(policy, (5, s + 1, d)) is Presence.UNKNOWN  # one elevated reading: recheck


def test_severe_blood_pressure_decides_on_one_reading(policy: Policy) -> None:
    t = policy.thresholds
    assert bp_status(policy, (5, t.bp_severe_systolic, 80)) is Presence.PRESENT
    assert bp_status(policy, (5, t.bp_severe_systolic - 1, 80)) is Presence.UNKNOWN
    assert bp_status(policy, (5, 130, t.bp_severe_diastolic)) is Presence.PRESENT
    assert bp_status(policy, (5, 130, t.bp_severe_diastolic - 1)) is Presence.UNKNOWN


def test_bp_window_days(policy: Policy) -> None:
    w = policy.thresholds.bp_window_days
    assert bp_status(policy, (w, 120, 80)) is Presence.ABSENT
    assert bp_status(policy, (w + 1, 120, 80)) is Presence.UNKNOWN


def test_recent_mi_days(policy: Policy) -> None:
    days = policy.thresholds.recent_mi_days

    def status(onset: int) -> Presence:
        mi = condition("myocardial_infarction", status=ClinicalStatus.RESOLVED, onset=onset, cid="mi")
        facts = trd_candidate(conditions=(condition("major_depression"), mi))
        return assess_contraindications(facts, policy, AS_OF)[C.CARDIOVASCULAR_DISEASE].status

    assert status(days) is Presence.PRESENT
    assert status(days + 1) is Presence.ABSENT


def test_older_adult_age(policy: Policy) -> None:
    age = policy.thresholds.older_adult_age

    def warned(born: dt.date) -> bool:
        facts = trd_candidate(patient=patient(Gender.MALE, born=born.isoformat()))
        return WarningId.OLDER_ADULT in {w.id for w in assess(facts, policy, AS_OF).warnings}

    birthday = AS_OF.replace(year=AS_OF.year - age)
    assert warned(birthday)
    assert not warned(birthday + dt.timedelta(days=1))


def test_phq9_item9_warning(policy: Policy) -> None:
    limit = policy.thresholds.phq9_item9_warning_above

    def warned(value: float) -> bool:
        facts = trd_candidate(scores=(*trd_candidate().scores, item9(12, value)))
        return WarningId.SUICIDE_RISK_REVIEW in {w.id for w in assess(facts, policy, AS_OF).warnings}

    assert not warned(limit)
    assert warned(limit + 1)


def trial(policy: Policy, c: Course, *scores: tuple[int, float]) -> object:
    facts = trd_candidate(courses=(c,), scores=tuple(phq9(d, v) for d, v in scores) or TRIAL_SCORES)
    return assess(facts, policy, AS_OF).treatment_resistance.trials[0]


def test_trial_min_weeks(policy: Policy) -> None:
    days = round(policy.thresholds.trial_min_weeks * 7)
    assert trial(policy, course("sertraline", 300, 300 - days, 150)).adequacy is Adequacy.ADEQUATE  # type: ignore[attr-defined]
    assert trial(policy, course("sertraline", 300, 301 - days, 150)).adequacy is Adequacy.INADEQUATE  # type: ignore[attr-defined]


@pytest.mark.parametrize("ingredient", sorted(load_policy("default").dose_floors_mg))
def test_every_dose_floor(policy: Policy, ingredient: str) -> None:
    floor = policy.dose_floors_mg[ingredient]
    at = trial(policy, course(ingredient, 300, 200, floor))
    below = trial(policy, course(ingredient, 300, 200, round(floor * 0.99, 6)))
    assert at.adequacy is Adequacy.ADEQUATE  # type: ignore[attr-defined]
    assert below.adequacy is Adequacy.INADEQUATE  # type: ignore[attr-defined]


def test_trial_lookback_edge_counts_only_the_days_inside(policy: Policy) -> None:
    edge = months_before(AS_OF, policy.thresholds.trial_lookback_months)
    inside = (AS_OF - edge).days
    min_days = round(policy.thresholds.trial_min_weeks * 7)
    # Entirely before the window: no trial at all.
    facts = trd_candidate(courses=(course("sertraline", inside + 200, inside + 1, 150),))
    assert assess(facts, policy, AS_OF).treatment_resistance.trials == ()
    # Straddling the edge: only the days after it count towards the minimum.
    enough = trial(policy, course("sertraline", inside + 100, inside - min_days, 150))
    short = trial(policy, course("sertraline", inside + 100, inside - min_days + 1, 150))
    assert enough.adequacy is Adequacy.ADEQUATE  # type: ignore[attr-defined]
    assert short.adequacy is Adequacy.INADEQUATE  # type: ignore[attr-defined]


def test_response_and_remission(policy: Policy) -> None:
    t = policy.thresholds
    base = 20.0
    responded = base * t.response_max_fraction
    c = course("sertraline", 300, 200, 150)
    assert trial(policy, c, (302, base), (210, responded)).outcome is Outcome.RESPONSE  # type: ignore[attr-defined]
    assert trial(policy, c, (302, base), (210, responded + 1)).outcome is Outcome.NO_RESPONSE  # type: ignore[attr-defined]
    low = t.remission_below
    assert trial(policy, c, (302, low + 2), (210, low - 1)).outcome is Outcome.RESPONSE  # type: ignore[attr-defined]
    assert trial(policy, c, (302, low + 1), (210, low)).outcome is Outcome.NO_RESPONSE  # type: ignore[attr-defined]


def test_baseline_and_follow_up_windows(policy: Policy) -> None:
    t = policy.thresholds
    c = course("sertraline", 300, 200, 150)
    assert trial(policy, c, (300 + t.baseline_days_before_start, 20), (210, 19)).baseline is not None  # type: ignore[attr-defined]
    assert trial(policy, c, (301 + t.baseline_days_before_start, 20), (210, 19)).baseline is None  # type: ignore[attr-defined]
    assert trial(policy, c, (300 - t.baseline_days_after_start, 20), (210, 19)).baseline is not None  # type: ignore[attr-defined]
    assert trial(policy, c, (299 - t.baseline_days_after_start, 20), (210, 19)).baseline is None  # type: ignore[attr-defined]
    assert trial(policy, c, (302, 20), (200 - t.followup_days_after_end, 19)).follow_up is not None  # type: ignore[attr-defined]
    assert trial(policy, c, (302, 20), (199 - t.followup_days_after_end, 19)).follow_up is None  # type: ignore[attr-defined]


def test_min_failed_trials(policy: Policy) -> None:
    needed = policy.thresholds.min_failed_trials
    ingredients = ["sertraline", "escitalopram", "fluoxetine", "venlafaxine"][:needed]
    courses, scores = [], []
    for i, ingredient in enumerate(ingredients):
        start = 600 - i * 120
        courses.append(course(ingredient, start, start - 90, 300))
        scores += [phq9(start + 2, 21), phq9(start - 85, 20)]
    facts = trd_candidate(courses=tuple(courses), scores=(*scores, phq9(12, 20)))
    assert assess(facts, policy, AS_OF).treatment_resistance.status is Criterion.MET
    fewer = trd_candidate(courses=tuple(courses[:-1]), scores=(*scores, phq9(12, 20)))
    assert assess(fewer, policy, AS_OF).treatment_resistance.status is Criterion.NOT_MET


def test_course_merge_gap_days(policy: Policy) -> None:
    gap = policy.thresholds.course_merge_gap_days

    def courses(days_between: int) -> int:
        segs = (DoseSegment(ago(400), ago(350), 150, DoseSource.STRUCTURED, "MedicationStatement/a"),
                DoseSegment(ago(350 - days_between), ago(250), 150, DoseSource.STRUCTURED, "MedicationStatement/b"))
        from fhir_mapping import ResourcePool, add_json, to_facts
        pool = ResourcePool()
        for i, s in enumerate(segs):
            add_json(pool, {"resourceType": "MedicationStatement", "id": f"m{i}", "status": "completed",
                            "subject": {"reference": "Patient/p"},
                            "medicationCodeableConcept": {"text": "sertraline 50 MG Oral Tablet"},
                            "effectivePeriod": {"start": s.start.isoformat(), "end": s.end.isoformat()},  # type: ignore[union-attr]
                            "dosage": [{"text": "150 mg daily"}]}, "t")
        return len(to_facts(pool, "p", merge_gap_days=gap).courses)

    assert courses(gap) == 1
    assert courses(gap + 1) == 2


def test_screen_and_pregnancy_test_windows(policy: Policy) -> None:
    t = policy.thresholds

    def ci(cid: ContraindicationId, **changes: object) -> Presence:
        return assess_contraindications(trd_candidate(**changes), policy, AS_OF)[cid].status

    w = t.drug_screen_window_days
    assert ci(C.SUBSTANCE_USE, lab_results=(screen(w, True),)) is Presence.PRESENT
    assert ci(C.SUBSTANCE_USE, lab_results=(screen(w + 1, True),)) is Presence.ABSENT
    p = t.pregnancy_test_window_days
    assert ci(C.PREGNANCY, lab_results=(hcg(p, True),)) is Presence.PRESENT
    assert ci(C.PREGNANCY, lab_results=(hcg(p + 1, True),)) is Presence.ABSENT


def test_pregnancy_lookback_days(policy: Policy) -> None:
    from fhir_mapping import LabResultFact, ObservationKind

    days = policy.thresholds.pregnancy_lookback_days

    def status(day: int) -> Presence:
        pregnant = LabResultFact("ps", ObservationKind.PREGNANCY_STATUS, "status", "82810-3", ago(day), True)
        return assess_contraindications(trd_candidate(lab_results=(pregnant,)), policy, AS_OF)[C.PREGNANCY].status

    assert status(days) is Presence.PRESENT
    assert status(days + 1) is Presence.ABSENT




def test_records_dated_on_the_day_of_assessment_count_and_later_ones_do_not(policy: Policy) -> None:
    t = policy.thresholds
    assert severity(policy, t.severity_phq9_min, day=0) is Criterion.MET
    assert severity(policy, t.severity_phq9_min, day=-1) is Criterion.UNKNOWN  # a future PHQ-9 is not on record
    assert bp_status(policy, (0, 200, 120)) is Presence.PRESENT
    assert bp_status(policy, (-1, 200, 120)) is Presence.UNKNOWN

    def ci(cid: ContraindicationId, **changes: object) -> Presence:
        return assess_contraindications(trd_candidate(**changes), policy, AS_OF)[cid].status

    assert ci(C.SUBSTANCE_USE, lab_results=(screen(0, True),)) is Presence.PRESENT
    assert ci(C.SUBSTANCE_USE, lab_results=(screen(-1, True),)) is Presence.ABSENT
    assert ci(C.PREGNANCY, lab_results=(hcg(0, True),)) is Presence.PRESENT
    assert ci(C.PREGNANCY, lab_results=(hcg(-1, True),)) is Presence.ABSENT
    mi_today = condition("myocardial_infarction", status=ClinicalStatus.RESOLVED, onset=0, cid="mi")
    assert ci(C.CARDIOVASCULAR_DISEASE, conditions=(condition("major_depression"), mi_today)) is Presence.PRESENT
    mi_later = condition("myocardial_infarction", status=ClinicalStatus.RESOLVED, onset=-1, cid="mi")
    assert ci(C.CARDIOVASCULAR_DISEASE, conditions=(condition("major_depression"), mi_later)) is Presence.ABSENT
    warned = {w.id for w in assess(trd_candidate(scores=(*trd_candidate().scores, item9(0, 3))), policy,
                                   AS_OF).warnings}
    assert WarningId.SUICIDE_RISK_REVIEW in warned


def test_a_trial_starting_today_is_on_record_with_no_weeks_yet(policy: Policy) -> None:
    facts = trd_candidate(courses=(course("sertraline", 0, None, 150),))
    (today,) = assess(facts, policy, AS_OF).treatment_resistance.trials
    assert today.start == AS_OF and today.weeks_total == 0 and today.adequacy is Adequacy.INADEQUATE
    later = trd_candidate(courses=(course("sertraline", -5, None, 150),))
    assert assess(later, policy, AS_OF).treatment_resistance.trials == ()


def test_overlapping_and_touching_segments_count_once(policy: Policy) -> None:
    def weeks(*spans: tuple[int, int]) -> float:
        segs = tuple(DoseSegment(ago(a), ago(b), 150, DoseSource.STRUCTURED, f"MedicationStatement/{a}")
                     for a, b in spans)
        c = Course("sertraline", course("x", 1, 0, 1).drug_class, course("x", 1, 0, 1).match_method, segs)
        return trial(policy, c).weeks_total  # type: ignore[attr-defined,no-any-return]

    assert weeks((300, 230), (230, 160)) == 20  # touching: 140 days
    assert weeks((300, 200), (250, 160)) == 20  # overlapping: still 140 days
    assert weeks((300, 230), (229, 160)) == round(139 / 7, 1)  # a day apart: the day between is not exposure

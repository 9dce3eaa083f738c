"""Antidepressant trials: adequate dose and duration, PHQ-9 response, and treatment resistance."""

from __future__ import annotations

from eligibility import Adequacy, Criterion, Outcome, assess_treatment_resistance, assess_trial, load_policy
from fhir_mapping import ClinicalFacts, Course, DoseSegment, DoseSource, MatchMethod, ResourceType

from .builders import AS_OF, ago, course, gap, phq9, trd_candidate

DEFAULT = load_policy("default")


def facts(*courses: Course, scores: tuple = ()) -> ClinicalFacts:  # type: ignore[type-arg]
    return ClinicalFacts(patient=None, courses=courses, scores=scores)


def test_a_trial_at_the_floor_for_six_weeks_is_adequate() -> None:
    t = assess_trial(course("sertraline", 100, 58, 50), facts(), DEFAULT, AS_OF)
    assert t.dose_floor_mg == 50
    assert t.weeks_at_adequate_dose == 6.0
    assert t.adequacy is Adequacy.ADEQUATE


def test_a_day_short_of_six_weeks_is_inadequate() -> None:
    t = assess_trial(course("sertraline", 100, 59, 50), facts(), DEFAULT, AS_OF)
    assert t.adequacy is Adequacy.INADEQUATE


def test_below_the_floor_is_inadequate_however_long() -> None:
    t = assess_trial(course("sertraline", 400, 100, 25), facts(), DEFAULT, AS_OF)
    assert t.adequacy is Adequacy.INADEQUATE and t.weeks_at_adequate_dose == 0


def test_only_the_weeks_at_or_above_the_floor_count() -> None:
    c = Course("sertraline", "SSRI", MatchMethod.RXNORM_INGREDIENT, (
        DoseSegment(ago(200), ago(130), 25, DoseSource.STRUCTURED, "MedicationStatement/a"),
        DoseSegment(ago(130), ago(100), 100, DoseSource.STRUCTURED, "MedicationStatement/b"),
    ))
    t = assess_trial(c, facts(), DEFAULT, AS_OF)
    assert t.weeks_total == 14.3
    assert t.weeks_at_adequate_dose == 4.3
    assert t.adequacy is Adequacy.INADEQUATE


def test_overlapping_records_are_not_counted_twice() -> None:
    c = Course("sertraline", "SSRI", MatchMethod.RXNORM_INGREDIENT, (
        DoseSegment(ago(100), ago(70), 100, DoseSource.STRUCTURED, "MedicationRequest/a"),
        DoseSegment(ago(90), ago(70), 100, DoseSource.STRUCTURED, "MedicationStatement/b"),
    ))
    assert assess_trial(c, facts(), DEFAULT, AS_OF).weeks_at_adequate_dose == 4.3


def test_a_course_without_any_dose_has_unknown_adequacy() -> None:
    t = assess_trial(course("sertraline", 200, 100, None), facts(), DEFAULT, AS_OF)
    assert t.adequacy is Adequacy.UNKNOWN


def test_only_the_last_24_months_count() -> None:
    # 24 months before 2026-11-01 is 2024-11-01, 730 days back: a course ending 750 days ago is out.
    tr = assess_treatment_resistance(facts(course("sertraline", 900, 750, 100)), DEFAULT, AS_OF)
    assert tr.trials == ()
    # A course straddling the window edge counts only its 30 days inside it.
    t = assess_trial(course("sertraline", 760, 700, 100), facts(), DEFAULT, AS_OF)
    assert t.weeks_at_adequate_dose == 4.3


def test_a_course_ending_on_the_windows_first_day_counts() -> None:
    # 24 months before 2026-11-01 is 2024-11-01, 730 days back: the window includes its first day.
    tr = assess_treatment_resistance(facts(course("sertraline", 800, 730, 100)), DEFAULT, AS_OF)
    assert [t.ingredient for t in tr.trials] == ["sertraline"]


def test_response_is_half_the_baseline_or_remission() -> None:
    c = course("sertraline", 200, 100, 100)
    def outcome(baseline: float, follow: float) -> Outcome:
        return assess_trial(c, facts(scores=(phq9(205, baseline), phq9(110, follow))), DEFAULT, AS_OF).outcome
    assert outcome(20, 10) is Outcome.RESPONSE  # exactly 50 %
    assert outcome(20, 11) is Outcome.NO_RESPONSE
    assert outcome(8, 4) is Outcome.RESPONSE  # remission (< 5)
    assert outcome(9, 5) is Outcome.NO_RESPONSE


def test_baseline_and_follow_up_windows() -> None:
    c = course("sertraline", 200, 100, 100)  # midpoint 150 days ago, end 100 days ago
    # Baseline 31 days before the start: outside; follow-up before the midpoint: outside.
    t = assess_trial(c, facts(scores=(phq9(231, 20), phq9(160, 19))), DEFAULT, AS_OF)
    assert t.baseline is None and t.follow_up is None and t.outcome is Outcome.UNKNOWN
    # Latest in each window wins; follow-up may be up to 14 days after the end.
    t = assess_trial(c, facts(scores=(phq9(229, 22), phq9(195, 20), phq9(140, 9), phq9(87, 12))), DEFAULT, AS_OF)
    assert t.baseline is not None and t.baseline.value == 20
    assert t.follow_up is not None and t.follow_up.value == 12
    assert t.outcome is Outcome.NO_RESPONSE


def test_one_score_is_never_both_the_baseline_and_the_follow_up() -> None:
    c = course("sertraline", 10, 4, 100)  # so short that its baseline and follow-up windows overlap
    t = assess_trial(c, facts(scores=(phq9(5, 18),)), DEFAULT, AS_OF)
    assert t.baseline is not None and t.baseline.value == 18
    assert t.follow_up is None and t.outcome is Outcome.UNKNOWN


def test_two_failed_ingredients_meet_treatment_resistance() -> None:
    tr = assess_treatment_resistance(trd_candidate(), DEFAULT, AS_OF)
    assert tr.status is Criterion.MET and tr.failed_adequate_trials == 2


def test_two_failed_courses_of_one_ingredient_count_once() -> None:
    f = trd_candidate(courses=(course("sertraline", 420, 330, 150), course("sertraline", 300, 215, 150)),
                      scores=(phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18)))
    tr = assess_treatment_resistance(f, DEFAULT, AS_OF)
    assert tr.failed_adequate_trials == 1 and tr.status is Criterion.NOT_MET


def test_unknown_outcomes_leave_resistance_unknown_when_they_could_make_two() -> None:
    f = trd_candidate(scores=(phq9(425, 21), phq9(335, 19)))  # escitalopram has no PHQ-9
    tr = assess_treatment_resistance(f, DEFAULT, AS_OF)
    assert tr.status is Criterion.UNKNOWN and tr.failed_adequate_trials == 1


def test_a_responding_most_recent_trial_means_not_resistant() -> None:
    f = trd_candidate(courses=(*trd_candidate().courses, course("venlafaxine", 150, None, 150, drug_class="SNRI")),
                      scores=(*trd_candidate().scores, phq9(152, 19), phq9(10, 6)))
    tr = assess_treatment_resistance(f, DEFAULT, AS_OF)
    assert tr.status is Criterion.NOT_MET and "venlafaxine" in tr.explanation


def test_missing_medication_data_is_unknown_never_not_met() -> None:
    f = trd_candidate(courses=(), gaps=(gap(ResourceType.MEDICATION_REQUEST),))
    assert assess_treatment_resistance(f, DEFAULT, AS_OF).status is Criterion.UNKNOWN


def test_missing_observations_make_every_outcome_unknown() -> None:
    f = trd_candidate(gaps=(gap(ResourceType.OBSERVATION),))
    tr = assess_treatment_resistance(f, DEFAULT, AS_OF)
    assert {t.outcome for t in tr.trials} == {Outcome.UNKNOWN}
    assert tr.status is Criterion.UNKNOWN

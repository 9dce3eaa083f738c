"""A patient in a course, said whole: the baseline severity the course is judged from, the work-up it asks for, and
the esketamine dose per session against the label (day 1 is 56 mg, 28 mg at 65 or older; then 56 or 84 mg [S8]).
Numbers come from the policy; the sentences are what a clinician reads."""

from __future__ import annotations

import datetime as dt

import pytest

from eligibility import (
    CoursePhase,
    Criterion,
    ResponseClass,
    Score,
    Severity,
    TreatmentCourse,
    WorkupItem,
    WorkupKind,
    assess,
    assess_course,
    course_summary,
    esketamine_dose_outside_label,
    load_policy,
)
from fhir_mapping import ClinicalFacts, DataDomain, GapReason, KetamineProduct, ResourceType, ScoreFact

from .builders import AS_OF, ago, dose, doses, gap, phq9, trd_candidate, twice_weekly

DEFAULT = load_policy("default")
T = DEFAULT.thresholds
TRIAL_SCORES = (phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18))


def in_course(*scores: ScoreFact, first: int, count: int, **changes: object) -> ClinicalFacts:
    return trd_candidate(scores=(*TRIAL_SCORES, *scores), ketamine=twice_weekly(first, count), **changes)


# -- the baseline severity of a course ------------------------------------------------------------------------------

@pytest.mark.parametrize(("baseline", "status", "sign"), [
    (T.severity_phq9_min, Criterion.MET, "at or above"), (T.severity_phq9_min - 1, Criterion.NOT_MET, "below"),
    (T.severity_phq9_min + 5, Criterion.MET, "at or above")])
def test_a_course_s_severity_is_the_phq9_before_its_first_dose_at_the_threshold_and_around_it(
        baseline: float, status: Criterion, sign: str) -> None:
    a = assess(in_course(phq9(22, baseline, "base"), phq9(2, 4), first=20, count=6), DEFAULT, AS_OF)
    assert a.severity.status is status and a.severity.threshold == T.severity_phq9_min
    assert a.severity.phq9 is not None and a.severity.phq9.value == baseline
    assert a.severity.explanation == (f"PHQ-9 {baseline:g} on {ago(22).isoformat()}, before the first dose "
                                      f"({sign} {T.severity_phq9_min:g})")


def test_no_phq9_before_the_first_dose_is_unknown_and_a_baseline_to_document() -> None:
    a = assess(in_course(phq9(2, 9), first=20, count=6), DEFAULT, AS_OF)
    assert a.severity == Severity(Criterion.UNKNOWN, T.severity_phq9_min, None,
                                  f"no PHQ-9 in the {T.severity_window_days} days before the first dose "
                                  f"({ago(20).isoformat()})")
    assert a.workup[0] == WorkupItem(
        WorkupKind.BASELINE_PHQ9, f"Document the PHQ-9 from before the first dose ({ago(20).isoformat()}) if it was "
        "taken elsewhere: the course's indication and benefit are judged from it", True)


def test_phq9_scores_that_could_not_be_fetched_leave_the_baseline_unknown_and_ask_for_nothing_to_document() -> None:
    facts = in_course(first=20, count=6, gaps=(gap(ResourceType.OBSERVATION, GapReason.TIMEOUT, DataDomain.PHQ9),))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.severity == Severity(Criterion.UNKNOWN, T.severity_phq9_min, None, "PHQ-9 scores could not be fetched")
    assert WorkupKind.BASELINE_PHQ9 not in [w.kind for w in a.workup]


# -- the PHQ-9 a course asks for --------------------------------------------------------------------------------

def test_during_induction_with_no_phq9_since_the_first_dose_one_is_advised_to_follow_the_response() -> None:
    # The response is not due yet in induction: the PHQ-9 is advised, not required.
    a = assess(in_course(phq9(22, 20), first=20, count=4), DEFAULT, AS_OF)
    assert a.workup == (WorkupItem(WorkupKind.PHQ9, f"PHQ-9 to follow the response (none in the last "
                                                    f"{T.severity_window_days} days)", False),)
    a = assess(in_course(phq9(22, 20), phq9(3, 12), first=20, count=4), DEFAULT, AS_OF)
    assert a.workup == ()


def test_in_maintenance_a_phq9_at_the_edge_of_the_window_judges_the_benefit_and_one_day_older_asks_for_one() -> None:
    window = T.severity_window_days
    a = assess(in_course(phq9(52, 20), phq9(window, 8), first=50, count=9), DEFAULT, AS_OF)
    assert a.course is not None and a.course.response_due
    assert a.workup == ()
    a = assess(in_course(phq9(52, 20), phq9(window + 1, 8), first=50, count=9), DEFAULT, AS_OF)
    assert a.course is not None
    assert a.workup == (WorkupItem(
        WorkupKind.PHQ9, f"PHQ-9 to assess benefit: induction ended on {a.course.induction_end.isoformat()}, and the "
        "label asks for evidence of therapeutic benefit to decide on continued treatment", True),)
    assert a.course.induction_end == ago(50 - 7 * T.session_induction_weeks)


# -- the esketamine dose per session against the label --------------------------------------------------------------

LOW, HIGH, OLDER = T.esketamine_dose_low_mg, T.esketamine_dose_high_mg, T.esketamine_older_start_mg
IN_COURSE = assess_course(trd_candidate(scores=(*TRIAL_SCORES, phq9(22, 20)), ketamine=twice_weekly(20, 6)),
                          DEFAULT, AS_OF)
ENDED = assess_course(trd_candidate(scores=(*TRIAL_SCORES, phq9(202, 20)),
                                    ketamine=twice_weekly(200, 6)), DEFAULT, AS_OF)


def test_the_courses_used_here_are_current_and_ended() -> None:
    assert IN_COURSE is not None and IN_COURSE.current
    assert ENDED is not None and not ENDED.current


@pytest.mark.parametrize("course", [None, ENDED], ids=["no course", "ended course"])
@pytest.mark.parametrize(("dose", "older", "why"), [
    (LOW, False, None),
    (HIGH, False, f"{HIGH:g} mg per session: the label's first dose is {LOW:g} mg"),
    (OLDER, False, f"{OLDER:g} mg per session: the label's first dose is {LOW:g} mg"),
    (OLDER, True, None),
    (LOW, True, f"{LOW:g} mg per session: at {T.older_adult_age} or older the label starts at {OLDER:g} mg"),
])
def test_a_first_dose_is_56_mg_or_28_mg_for_an_older_adult(course: TreatmentCourse | None, dose: float, older: bool,
                                                          why: str | None) -> None:
    assert esketamine_dose_outside_label(dose, older, course, DEFAULT) == why


@pytest.mark.parametrize(("dose", "older", "why"), [
    (LOW, False, None), (HIGH, False, None),
    (OLDER, False, f"{OLDER:g} mg per session: the label's doses are {LOW:g} or {HIGH:g} mg"),
    (100, False, f"100 mg per session: the label's doses are {LOW:g} or {HIGH:g} mg"),
    (OLDER, True, None), (LOW, True, None), (HIGH, True, None),
    (100, True, f"100 mg per session: the label's doses are {LOW:g} or {HIGH:g} mg ({OLDER:g} mg at "
                f"{T.older_adult_age} or older)"),
])
def test_in_a_current_course_a_dose_is_56_or_84_mg_or_28_mg_for_an_older_adult(dose: float, older: bool,
                                                                             why: str | None) -> None:
    assert esketamine_dose_outside_label(dose, older, IN_COURSE, DEFAULT) == why


# -- the course in one line -----------------------------------------------------------------------------------------

def course_of(*, current: bool = True, doses: int | None = 9, baseline: float | None = 19,
              latest: float | None = 8, response: ResponseClass = ResponseClass.RESPONSE,
              product: KetamineProduct = KetamineProduct.ESKETAMINE_NASAL) -> TreatmentCourse:
    first = dt.date(2026, 10, 1)
    return TreatmentCourse(
        product=product, current=current, first_dose=first, last_dose=dt.date(2026, 10, 29), doses=doses,
        baseline_phq9=None if baseline is None else Score(baseline, dt.date(2026, 9, 30), "Observation/b"),
        latest_phq9=None if latest is None else Score(latest, dt.date(2026, 10, 30), "Observation/l"),
        response=response, week=5 if current else None, phase=CoursePhase.MAINTENANCE if current else None,
        induction_end=dt.date(2026, 10, 29), dose_days=(), evidence=())


@pytest.mark.parametrize(("course", "line"), [
    (course_of(), "Esketamine course, week 5 (9 doses): PHQ-9 19 \u2192 8 (\u221258 %, response)"),
    (course_of(doses=1, latest=21, response=ResponseClass.NONE),
     "Esketamine course, week 5 (1 dose): PHQ-9 19 \u2192 21 (+11 %, no response)"),
    (course_of(doses=2, baseline=0, latest=0, product=KetamineProduct.KETAMINE),
     "Ketamine course, week 5 (2 doses): PHQ-9 0 \u2192 0 (response)"),
    (course_of(doses=None, latest=None, response=ResponseClass.UNKNOWN),
     "Esketamine course, week 5: PHQ-9 19 before the first dose, none since (response unknown)"),
    (course_of(baseline=None, response=ResponseClass.UNKNOWN),
     "Esketamine course, week 5 (9 doses): no PHQ-9 before the first dose, latest 8 (response unknown)"),
    (course_of(baseline=None, latest=None, response=ResponseClass.NOT_YET_DUE),
     "Esketamine course, week 5 (9 doses): no PHQ-9 before or since the first dose (benefit evaluated at the end of "
     "induction, 2026-10-29)"),
    (course_of(current=False, doses=3, response=ResponseClass.PARTIAL, latest=12),
     "Earlier esketamine course 2026-10-01 to 2026-10-29 (3 doses): PHQ-9 19 \u2192 12 (\u221237 %, partial "
     "response)"),
])
def test_a_course_in_one_line(course: TreatmentCourse, line: str) -> None:
    assert course_summary(course) == line


# -- the course's edges ---------------------------------------------------------------------------------------------

def test_a_phq9_on_the_first_dose_s_day_is_the_baseline_not_a_response() -> None:
    window = T.severity_window_days
    for first in (20, 60):  # a current course, and an earlier one (last dose more than the continuity window ago)
        c = assess_course(trd_candidate(scores=(*TRIAL_SCORES, phq9(first, 20)), ketamine=doses(first)), DEFAULT,
                          AS_OF)
        assert c is not None and c.baseline_phq9 is not None and c.baseline_phq9.day == ago(first)
        assert c.latest_phq9 is None, first
    # The baseline window's first day counts, and a PHQ-9 taken today is the latest.
    c = assess_course(trd_candidate(scores=(*TRIAL_SCORES, phq9(20 + window, 21), phq9(0, 9)), ketamine=doses(20)),
                      DEFAULT, AS_OF)
    assert c is not None and c.baseline_phq9 is not None and c.latest_phq9 is not None
    assert (c.baseline_phq9.day, c.latest_phq9.day) == (ago(20 + window), AS_OF)


def test_a_course_is_current_up_to_the_continuity_window_s_last_day() -> None:
    days = T.course_continuity_days
    for last, current in ((days, True), (days + 1, False)):
        c = assess_course(trd_candidate(ketamine=doses(last + 10, last)), DEFAULT, AS_OF)
        assert c is not None and c.current is current, last


def test_doses_the_continuity_window_apart_are_one_course_and_a_day_more_starts_a_new_one() -> None:
    days = T.course_continuity_days
    c = assess_course(trd_candidate(ketamine=doses(days + 5, 5)), DEFAULT, AS_OF)
    assert c is not None and (c.first_dose, c.doses) == (ago(days + 5), 2)
    c = assess_course(trd_candidate(ketamine=doses(days + 6, 5)), DEFAULT, AS_OF)
    assert c is not None and (c.first_dose, c.doses) == (ago(5), 1)


@pytest.mark.parametrize(("products", "product"), [
    ((KetamineProduct.ESKETAMINE_NASAL, KetamineProduct.KETAMINE), KetamineProduct.ESKETAMINE_NASAL),
    ((KetamineProduct.ESKETAMINE_NASAL, KetamineProduct.KETAMINE, KetamineProduct.KETAMINE),
     KetamineProduct.KETAMINE),
    ((KetamineProduct.KETAMINE,), KetamineProduct.KETAMINE),
])
def test_a_course_is_of_the_product_at_least_half_its_records_are(products: tuple[KetamineProduct, ...],
                                                                   product: KetamineProduct) -> None:
    records = tuple(dose(10 - i, product=p) for i, p in enumerate(products))
    c = assess_course(trd_candidate(ketamine=records), DEFAULT, AS_OF)
    assert c is not None and c.product is product

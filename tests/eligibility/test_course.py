"""Patients already in treatment: the course is continued or reassessed, never judged again as a first start."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eligibility import (
    ContraindicationId,
    CoursePhase,
    Presence,
    ResponseClass,
    Verdict,
    WorkupKind,
    assess,
    assess_course,
    assessment_to_json,
    classify_response,
    load_policy,
)
from fhir_mapping import ClinicalFacts, ExposureKind, KetamineExposure, KetamineProduct, ResourceType, ScoreFact

from .builders import (
    AS_OF,
    ago,
    course,
    doses,
    gap,
    hcg,
    ketamine_record,
    phq9,
    trd_candidate,
    twice_weekly,
)

DEFAULT = load_policy("default")
T = DEFAULT.thresholds
#: The TRD candidate's own scores (trial baselines and follow-ups), without its current PHQ-9.
TRIAL_SCORES = (phq9(425, 21), phq9(335, 19), phq9(302, 20), phq9(220, 18))


def in_course(*scores: ScoreFact, ketamine: tuple[KetamineExposure, ...], **changes: object) -> ClinicalFacts:
    return trd_candidate(scores=(*TRIAL_SCORES, *scores), ketamine=ketamine, **changes)


def test_the_chart_of_the_issue_is_continued_not_judged_below_threshold() -> None:
    """Eight doses from 22 Oct to 15 Nov, an active statement, PHQ-9 19 before and 8 on 19 Nov: as of 20 Nov."""
    as_of = dt.date(2026, 11, 20)
    days = [dt.date(2026, 10, 22) + dt.timedelta(days=d) for d in (0, 3, 7, 10, 14, 17, 21, 24)]
    given_doses = tuple(KetamineExposure(f"MedicationAdministration/a{i}", ExposureKind.ADMINISTRATION,
                                         KetamineProduct.ESKETAMINE_NASAL, "Spravato 56 mg", d, d, dose_mg=56)
                        for i, d in enumerate(days))
    statement = KetamineExposure("MedicationStatement/s", ExposureKind.STATEMENT, KetamineProduct.ESKETAMINE_NASAL,
                                 "Spravato", days[0], None, active=True)
    base = trd_candidate()
    facts = trd_candidate(scores=(*base.scores, phq9((AS_OF - dt.date(2026, 11, 19)).days, 8)),
                          ketamine=(*given_doses, statement))
    a = assess(facts, DEFAULT, as_of)
    assert a.verdict is Verdict.CONTINUE
    assert a.course is not None
    assert (a.course.doses, a.course.week, a.course.phase, a.course.response) == (
        8, 5, CoursePhase.MAINTENANCE, ResponseClass.RESPONSE)
    assert a.reasons[0].text == ("Esketamine course, week 5 (8 doses): PHQ-9 19 \u2192 8 (\u221258 %, response): "
                                 "no contraindication documented")
    assert a.severity.phq9 is not None and a.severity.phq9.value == 19  # the indication, judged at baseline


@pytest.mark.parametrize(("baseline", "latest", "expected"), [
    (20, 10, ResponseClass.RESPONSE),    # a fall of exactly 50 %
    (100, 51, ResponseClass.PARTIAL),    # 49 %
    (9, 4, ResponseClass.REMISSION),     # below 5
    (9, 5, ResponseClass.PARTIAL),       # 5 is not remission (44 %)
    (20, 15, ResponseClass.PARTIAL),     # exactly 25 %
    (25, 19, ResponseClass.NONE),        # 24 %
    (20, 22, ResponseClass.NONE),        # worse
])
def test_response_classes_at_their_edges(baseline: float, latest: float, expected: ResponseClass) -> None:
    assert classify_response(baseline, latest, DEFAULT) is expected


@pytest.mark.parametrize(("latest", "verdict", "response"), [
    (10, Verdict.CONTINUE, ResponseClass.RESPONSE),
    (4, Verdict.CONTINUE, ResponseClass.REMISSION),
    (11, Verdict.REASSESS, ResponseClass.PARTIAL),
    (15, Verdict.REASSESS, ResponseClass.PARTIAL),
    (16, Verdict.REASSESS, ResponseClass.NONE),
])
def test_after_induction_the_response_decides(latest: float, verdict: Verdict, response: ResponseClass) -> None:
    a = assess(in_course(phq9(32, 20), phq9(2, latest), ketamine=twice_weekly(30, 8)), DEFAULT, AS_OF)
    assert a.course is not None and a.course.response is response
    assert a.verdict is verdict


def test_a_reassess_names_the_label_question() -> None:
    a = assess(in_course(phq9(32, 20), phq9(2, 17), ketamine=twice_weekly(30, 8)), DEFAULT, AS_OF)
    assert a.verdict is Verdict.REASSESS
    assert a.reasons[0].code == "reassess"
    assert "evaluate the evidence of therapeutic benefit before continuing" in a.reasons[0].text


def test_induction_in_progress_is_continued_whatever_the_score() -> None:
    a = assess(in_course(phq9(12, 20), phq9(1, 19), ketamine=twice_weekly(10, 3)), DEFAULT, AS_OF)
    assert a.course is not None
    assert (a.course.phase, a.course.response, a.verdict) == (CoursePhase.INDUCTION, ResponseClass.NOT_YET_DUE,
                                                              Verdict.CONTINUE)


def test_the_last_day_of_induction_and_the_first_after() -> None:
    for first, phase in ((T.session_induction_weeks * 7 - 1, CoursePhase.INDUCTION),
                         (T.session_induction_weeks * 7, CoursePhase.MAINTENANCE)):
        c = assess_course(in_course(phq9(first + 1, 20), phq9(1, 9), ketamine=doses(first, 3)), DEFAULT, AS_OF)
        assert c is not None and c.phase is phase, first


def test_benefit_unknown_once_due_asks_for_a_phq9() -> None:
    # Maintenance, the last PHQ-9 since the first dose 40 days ago: outside the severity window.
    a = assess(in_course(phq9(52, 20), phq9(40, 9), ketamine=twice_weekly(50, 9)), DEFAULT, AS_OF)
    assert a.course is not None and a.course.response is ResponseClass.UNKNOWN
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert [r.code for r in a.reasons] == ["unknown:response"]
    assert a.workup[0].kind is WorkupKind.PHQ9 and a.workup[0].required
    assert "PHQ-9 to assess benefit" in a.workup[0].text


def test_no_phq9_before_the_first_dose_is_a_baseline_to_document() -> None:
    a = assess(in_course(phq9(2, 9), ketamine=twice_weekly(20, 6)), DEFAULT, AS_OF)
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert [r.code for r in a.reasons] == ["unknown:severity"]
    assert a.workup[0].kind is WorkupKind.BASELINE_PHQ9


def test_a_baseline_below_the_threshold_is_not_indicated_when_the_course_began() -> None:
    a = assess(in_course(phq9(12, 8), phq9(1, 4), ketamine=twice_weekly(10, 3)), DEFAULT, AS_OF)
    assert a.verdict is Verdict.NOT_INDICATED
    assert a.reasons[0].text.startswith("Severity below threshold when the course began: PHQ-9 8 on")


def test_a_contraindication_since_the_first_dose_is_dated_in_the_course() -> None:
    a = assess(in_course(phq9(22, 20), phq9(2, 11), ketamine=twice_weekly(19, 6), lab_results=(hcg(5, True),)),
               DEFAULT, AS_OF)
    assert a.verdict is Verdict.CONTRAINDICATED
    assert a.contraindications[ContraindicationId.PREGNANCY].status is Presence.PRESENT
    test = a.contraindications[ContraindicationId.PREGNANCY].evidence[0].description
    assert a.reasons[0].text.endswith(f"(new since the course began: {test} on {ago(5).isoformat()}, "
                                      "14 days into the course)")


def test_the_indication_is_judged_as_it_stood_at_the_first_dose() -> None:
    """An antidepressant still taken when the course began, whose PHQ-9 fell during the course: the fall is the
    course's, not a response to the antidepressant."""
    trials = (course("sertraline", 420, 330, 150, ev="MedicationStatement/s"),
              course("escitalopram", 200, None, 20, ev="MedicationStatement/e"))
    facts = in_course(phq9(205, 20), phq9(32, 19), phq9(2, 6), ketamine=twice_weekly(30, 8), courses=trials)
    first_start = assess(trd_candidate(scores=facts.scores, courses=trials), DEFAULT, AS_OF)
    assert first_start.verdict is Verdict.NOT_INDICATED  # judged today, the fall reads as a response to escitalopram
    a = assess(facts, DEFAULT, AS_OF)
    assert a.verdict is Verdict.CONTINUE


@pytest.mark.parametrize(("last", "current"), [(T.course_continuity_days, True),
                                               (T.course_continuity_days + 1, False)])
def test_the_continuity_window(last: int, current: bool) -> None:
    facts = in_course(phq9(last + 30, 20), phq9(last, 9), phq9(3, 9), ketamine=twice_weekly(last + 24, 8))
    c = assess_course(facts, DEFAULT, AS_OF)
    assert c is not None and c.last_dose == ago(last) and c.current is current


def test_an_ended_course_makes_a_new_order_a_first_start_with_the_course_as_history() -> None:
    facts = in_course(phq9(182, 21), phq9(150, 9), phq9(4, 8), ketamine=twice_weekly(180, 8))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.verdict is Verdict.NOT_INDICATED  # the PHQ-9 of today, judged as a first start
    assert a.course is not None and not a.course.current and a.course.phase is None
    assert a.course.response is ResponseClass.RESPONSE  # its response, shown as history
    assert assessment_to_json(a)["course"]["current"] is False


def test_a_statement_alone_makes_a_course_of_unknown_dose_count() -> None:
    c = assess_course(in_course(phq9(22, 18), phq9(3, 9), ketamine=(ketamine_record(20, None),)), DEFAULT, AS_OF)
    assert c is not None and c.current and c.doses is None and c.first_dose == ago(20)


def test_charted_doses_date_the_course_over_a_stale_active_statement() -> None:
    facts = in_course(phq9(3, 8), ketamine=(*twice_weekly(200, 8), ketamine_record(200, None)))
    c = assess_course(facts, DEFAULT, AS_OF)
    assert c is not None and not c.current


def test_doses_that_could_not_be_fetched_never_make_a_low_score_not_indicated() -> None:
    facts = trd_candidate(scores=(*TRIAL_SCORES, phq9(5, 8)), gaps=(gap(ResourceType.MEDICATION_ADMINISTRATION),))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert "doses could not be fetched" in a.severity.explanation


@given(latest=st.integers(0, 27), day=st.integers(1, 29))
def test_no_phq9_taken_during_a_current_course_makes_it_not_indicated(latest: int, day: int) -> None:
    facts = in_course(phq9(31, 20), phq9(day, latest), ketamine=twice_weekly(30, 8))
    a = assess(facts, DEFAULT, AS_OF)
    assert a.verdict is not Verdict.NOT_INDICATED
    assert a.verdict in (Verdict.CONTINUE, Verdict.REASSESS, Verdict.NEEDS_WORKUP)

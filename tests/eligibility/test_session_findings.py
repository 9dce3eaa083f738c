"""Each session finding whole: the check, how urgent it is, the source it cites, and the facts a card words it from
(minutes, the dose, the readings, the sessions and days counted). A card says "discharge not before 11:00" or
"3 sessions in 7 days (at most 2)" from these fields alone, so each one is specified, not only the check's name.
Expected values come from the loaded policy and the scenario, never from the rules' own output."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from eligibility import (
    SessionCheck,
    SessionFinding,
    TreatmentCourse,
    Urgency,
    assess_booking,
    assess_course,
    assess_discharge,
    load_policy,
)
from eligibility.sessions import _plus_days
from fhir_mapping import (
    Administration,
    BloodPressureFact,
    ClinicalFacts,
    DataDomain,
    EncounterFact,
    ExposureKind,
    KetamineExposure,
    KetamineProduct,
    LeftOut,
    SessionAppointment,
    TimedBloodPressure,
)

POLICY = load_policy("default")
T = POLICY.thresholds
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
DOSE = Administration("dose-1", T0, "Spravato 56 mg", esketamine=True)
OUTPATIENT = EncounterFact("enc-1", True, "AMB")
INPATIENT = EncounterFact("enc-1", False, "IMP")
TWO_HOURS = POLICY.cite("session_monitoring_minutes")
BP_RULE = POLICY.cite("session_bp_systolic_above")
AFTER_CARE = POLICY.cite("rems_form_days")
ABOVE = (T.session_bp_systolic_above, T.session_bp_diastolic_above)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def bp(minutes: float, systolic: float | None, diastolic: float | None) -> TimedBloodPressure:
    return TimedBloodPressure(f"bp-{minutes:g}", at(minutes), systolic, diastolic)


def of(findings: object, check: SessionCheck) -> list[SessionFinding]:
    return [f for f in getattr(findings, "findings", findings) if f.check is check]  # type: ignore[attr-defined]


# -- discharge ------------------------------------------------------------------------------------------------------

def test_too_early_says_the_minutes_since_the_dose_the_minutes_required_and_when_the_patient_may_go() -> None:
    result = assess_discharge([DOSE], [bp(40, 130, 80)], INPATIENT, POLICY, at(50))
    assert result.findings == (SessionFinding(
        SessionCheck.DISCHARGE_TOO_EARLY, Urgency.CRITICAL, TWO_HOURS, minutes=50.0,
        required_minutes=T.session_monitoring_minutes, dose=DOSE, earliest=at(T.session_monitoring_minutes)),)


@pytest.mark.parametrize("charted_ahead", [0.0, 0.5, 10.0])
def test_a_dose_charted_at_or_after_now_is_zero_minutes_ago_never_negative(charted_ahead: float) -> None:
    # The EHR's clock and ours may differ by minutes: the dose is "just given", the full two hours still ahead.
    dose = Administration("dose-ahead", at(charted_ahead), "Spravato 56 mg", esketamine=True)
    (finding,) = of(assess_discharge([dose], [], INPATIENT, POLICY, at(0)), SessionCheck.DISCHARGE_TOO_EARLY)
    assert finding.minutes == 0.0
    assert finding.earliest == at(charted_ahead + T.session_monitoring_minutes)


def test_a_dose_at_the_end_of_the_calendar_may_go_at_its_last_instant_in_the_dose_s_time_zone() -> None:
    # Year-9999 instants are invalid entries for the mapping; the rules hold at the last instant anyway.
    dose = Administration("edge", dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.UTC), "Spravato", True)
    (finding,) = of(assess_discharge([dose], [], INPATIENT, POLICY, at(0)), SessionCheck.DISCHARGE_TOO_EARLY)
    assert finding.earliest == dt.datetime.max.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize("readings", [[], [bp(-10, 130, 80)], [bp(0, 130, 80)]],
                         ids=["none", "before the dose", "at the dose's instant"])
def test_no_reading_after_the_dose_is_a_warning_citing_the_label_s_bp_rule(readings: list[TimedBloodPressure]) -> None:
    result = assess_discharge([DOSE], readings, INPATIENT, POLICY, at(150))
    assert result.findings == (SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, BP_RULE, dose=DOSE),)


def test_an_elevated_reading_not_lower_than_the_one_before_quotes_both_and_the_dose() -> None:
    before, latest = bp(40, ABOVE[0] + 16, ABOVE[1] + 8), bp(100, ABOVE[0] + 18, ABOVE[1] + 6)
    result = assess_discharge([DOSE], [latest, before], INPATIENT, POLICY, at(150))  # in any order
    assert result.findings == (SessionFinding(SessionCheck.BP_NOT_DECREASING, Urgency.WARNING, BP_RULE,
                                              reading=latest, previous=before, dose=DOSE),)


@pytest.mark.parametrize(("earlier", "latest", "warned"), [
    ((150, 95), (150, 95), True),     # unchanged is not decreasing
    ((150, 80), (152, 80), True),     # the systolic alone above 140 and rising
    ((130, 95), (130, 96), True),     # the diastolic alone above 90 and rising
    ((150, 100), (None, 95), False),  # only a diastolic read: it fell, so the values decline
])
def test_after_the_dose_each_value_is_compared_with_its_own_earlier_reading(
        earlier: tuple[float | None, float | None], latest: tuple[float | None, float | None], warned: bool) -> None:
    readings = [bp(40, *earlier), bp(100, *latest)]
    found = of(assess_discharge([DOSE], readings, INPATIENT, POLICY, at(150)), SessionCheck.BP_NOT_DECREASING)
    assert bool(found) is warned


def test_blood_pressure_that_could_not_be_fetched_is_said_with_the_dose_it_was_for() -> None:
    result = assess_discharge([DOSE], [], INPATIENT, POLICY, at(150), frozenset({DataDomain.SESSION_BLOOD_PRESSURE}))
    assert result.findings == (SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, BP_RULE,
                                              unknown=(DataDomain.SESSION_BLOOD_PRESSURE.value,), dose=DOSE),)


def test_doses_that_could_not_be_fetched_make_one_warning_naming_every_missing_search() -> None:
    unknown = frozenset({DataDomain.ADMINISTRATIONS, DataDomain.ENCOUNTER})
    result = assess_discharge([], [], None, POLICY, at(150), unknown)
    assert result.findings == (SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS,
                                              unknown=(DataDomain.ADMINISTRATIONS.value, DataDomain.ENCOUNTER.value)),)


def test_an_encounter_that_could_not_be_fetched_leaves_the_outpatient_after_care_unchecked() -> None:
    result = assess_discharge([DOSE], [bp(40, 130, 80)], None, POLICY, at(150), frozenset({DataDomain.ENCOUNTER}))
    assert result.findings == (SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, AFTER_CARE,
                                              unknown=(DataDomain.ENCOUNTER.value,)),)


@pytest.mark.parametrize(("encounter", "outpatient"), [(OUTPATIENT, True), (None, None),
                                                       (EncounterFact("enc-1", None, ""), None)])
def test_outpatient_after_care_is_information_citing_rems_and_says_whether_the_visit_was_outpatient(
        encounter: EncounterFact | None, outpatient: bool | None) -> None:
    result = assess_discharge([DOSE], [bp(40, 130, 80)], encounter, POLICY, at(150))
    assert result.findings == (SessionFinding(SessionCheck.OUTPATIENT_AFTERCARE, Urgency.INFO, AFTER_CARE,
                                              outpatient=outpatient),)


def test_the_assessment_lists_the_doses_it_counted_and_leaves_out_an_old_one_of_another_encounter() -> None:
    old = Administration("elsewhere", at(-600), "Spravato 56 mg", True, other_encounter="Encounter/e2")
    result = assess_discharge([DOSE, old], [bp(40, 130, 80)], INPATIENT, POLICY, at(150))
    assert result.administrations == (DOSE,) and result.last_dose == DOSE
    assert result.findings == (SessionFinding(SessionCheck.RECORDS_LEFT_OUT, Urgency.WARNING, TWO_HOURS,
                                              left_out=LeftOut(other_encounter=1)),)


# -- booking --------------------------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
BOOKED = dt.date(2026, 11, 10)


def session(sid: str, day: dt.date, minutes: float = 150, transport: bool = True) -> SessionAppointment:
    start = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    return SessionAppointment(sid, start, start + dt.timedelta(minutes=minutes), "booked", True, True, transport,
                              "appointment text")


def days(n: int) -> dt.date:
    """The booked day moved by ``n`` days."""
    return BOOKED + dt.timedelta(days=n)


def long_ago() -> SessionAppointment:
    """A first session long enough before the booking that it falls after induction (weekly at most)."""
    return session("first", days(-7 * T.session_induction_weeks - 30))


def test_a_short_slot_says_its_minutes_and_the_dose_plus_monitoring_it_must_hold() -> None:
    found = assess_booking(session("new", BOOKED, minutes=100), [], [], POLICY, NOW)
    assert found == [SessionFinding(SessionCheck.SLOT_TOO_SHORT, Urgency.WARNING, TWO_HOURS, minutes=100,
                                    required_minutes=T.session_dose_minutes + T.session_monitoring_minutes)]


def test_a_second_session_on_the_booked_day_names_both_sessions_and_the_day() -> None:
    same_day, other_day = session("same", BOOKED), session("other", days(-3))
    new = session("new", BOOKED)
    for others in ([same_day, other_day], [other_day, same_day]):  # wherever the EHR lists it
        found = of(assess_booking(new, others, [], POLICY, NOW), SessionCheck.SAME_DAY)
        assert found == [SessionFinding(SessionCheck.SAME_DAY, Urgency.WARNING,
                                        POLICY.cite("session_max_per_week_induction"), sessions=(same_day, new),
                                        dates=(BOOKED,), limit=1)]


def test_the_appointment_being_booked_is_not_counted_again_when_the_ehr_lists_it_among_the_others() -> None:
    new = session("new", BOOKED)
    assert assess_booking(new, [new, session("new", BOOKED)], [], POLICY, NOW) == []


def test_an_appointment_without_a_start_is_checked_for_all_but_its_schedule() -> None:
    undated = SessionAppointment("new", None, None, "proposed", True, True, False, "appointment text")
    found = assess_booking(undated, [session("other", BOOKED)], [], POLICY, NOW)
    assert [f.check for f in found] == [SessionCheck.ARRANGE_TRANSPORT]


def test_too_many_in_induction_lists_the_week_s_sessions_and_days_and_cites_the_induction_schedule() -> None:
    a, b, outside = session("a", days(-4)), session("b", days(-2)), session("outside", days(-12))
    new = session("new", BOOKED)
    found = of(assess_booking(new, [outside, a, b], [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS)
    assert found == [SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING,
                                    POLICY.cite("session_max_per_week_induction"), sessions=(a, b, new),
                                    limit=T.session_max_per_week_induction, dates=(days(-4), days(-2), BOOKED))]


def test_too_many_after_induction_cites_the_weekly_schedule() -> None:
    first, recent = long_ago(), session("recent", days(-3))
    new = session("new", BOOKED)
    found = of(assess_booking(new, [first, recent], [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS)
    assert found == [SessionFinding(SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING,
                                    POLICY.cite("session_max_per_week_after_induction"), sessions=(recent, new),
                                    limit=T.session_max_per_week_after_induction, dates=(days(-3), BOOKED))]


def test_induction_ends_on_the_day_its_weeks_are_over() -> None:
    # No course on record: the first session booked dates the phase, and the day 4 weeks later is weekly already.
    first = session("first", days(-7 * T.session_induction_weeks))
    recent = session("recent", days(-3))
    found = of(assess_booking(session("new", BOOKED), [first, recent], [], POLICY, NOW),
               SessionCheck.TOO_MANY_SESSIONS)
    assert [f.limit for f in found] == [T.session_max_per_week_after_induction]
    day_before = of(assess_booking(session("new", days(-1)), [first, recent], [], POLICY, NOW),
                    SessionCheck.TOO_MANY_SESSIONS)
    assert day_before == []  # still induction: two in 7 days is allowed


# The 7 days counted are any 7 consecutive days that hold the booked day (after induction: at most one session).

def test_a_session_seven_days_after_the_booking_is_in_the_next_week() -> None:
    assert of(assess_booking(session("new", BOOKED), [long_ago(), session("next", days(7))], [], POLICY, NOW),
              SessionCheck.TOO_MANY_SESSIONS) == []
    assert of(assess_booking(session("new", BOOKED), [long_ago(), session("next", days(6))], [], POLICY, NOW),
              SessionCheck.TOO_MANY_SESSIONS) != []


def test_sessions_crowded_into_an_earlier_week_are_not_this_booking_s_problem() -> None:
    crowded = [session(f"s{n}", days(n)) for n in (-12, -10, -8)]  # three in a week, in induction: that week's
    assert of(assess_booking(session("new", BOOKED), crowded, [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS) == []


def test_sessions_crowded_into_a_later_week_are_not_this_booking_s_problem() -> None:
    later = [session("l1", days(3)), session("l2", days(7)), session("l3", days(7))]  # two on one later day
    assert of(assess_booking(session("new", BOOKED), later, [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS) == []


def test_the_week_reported_holds_the_booking_and_is_the_earliest_that_breaks_the_limit() -> None:
    first, older, before, after = long_ago(), session("older", days(-7)), session("b", days(-5)), session("a", days(5))
    new = session("new", BOOKED)
    (finding,) = of(assess_booking(new, [first, older, before], [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS)
    assert finding.dates == (days(-5), BOOKED) and finding.sessions == (before, new)
    (finding,) = of(assess_booking(new, [first, before, after], [], POLICY, NOW), SessionCheck.TOO_MANY_SESSIONS)
    assert finding.dates == (days(-5), BOOKED) and finding.sessions == (before, new)


def _course(first_days_ago: int, dose_days_ago: tuple[int, ...], today: dt.date) -> TreatmentCourse:
    given = tuple(KetamineExposure(f"MedicationAdministration/a{d}", ExposureKind.ADMINISTRATION,
                                   KetamineProduct.ESKETAMINE_NASAL, "Spravato", today - dt.timedelta(days=d),
                                   today - dt.timedelta(days=d)) for d in sorted({first_days_ago, *dose_days_ago}))
    course = assess_course(ClinicalFacts(None, ketamine=given), POLICY, today)
    assert course is not None
    return course


def test_a_course_s_induction_ends_on_its_induction_end_day() -> None:
    today = NOW.date()
    twice_weekly = tuple(range(27, 0, -3))
    course = _course(27, twice_weekly, today)  # first dose 27 days ago: induction ends tomorrow
    tomorrow = today + dt.timedelta(days=1)
    assert course.induction_end == tomorrow
    found = assess_booking(session("new", tomorrow), [], [], POLICY, NOW, course=course)
    assert [f.limit for f in of(found, SessionCheck.TOO_MANY_SESSIONS)] == [T.session_max_per_week_after_induction]


def test_a_maintenance_session_with_the_benefit_unknown_names_the_day_induction_ended() -> None:
    today = NOW.date()
    course = _course(40, (36, 33, 29, 26, 22, 19, 15), today)  # no PHQ-9 on record: the benefit is unknown
    found = of(assess_booking(session("new", today + dt.timedelta(days=4)), [], [], POLICY, NOW, course=course),
               SessionCheck.BENEFIT_NOT_ASSESSED)
    assert found == [SessionFinding(SessionCheck.BENEFIT_NOT_ASSESSED, Urgency.WARNING,
                                    POLICY.cite("session_induction_weeks"), dates=(course.induction_end,))]


def test_an_ended_course_does_not_date_the_schedule_a_restart_is_a_new_induction() -> None:
    today = NOW.date()
    ended = _course(200, (196, 193), today)
    assert not ended.current
    restart = [session("r1", today + dt.timedelta(days=2))]
    found = assess_booking(session("new", today + dt.timedelta(days=5)), restart, [], POLICY, NOW, course=ended)
    assert of(found, SessionCheck.TOO_MANY_SESSIONS) == [] and of(found, SessionCheck.BENEFIT_NOT_ASSESSED) == []
    # The same course, were it current, would make this a maintenance week with two sessions.
    current = dataclasses.replace(ended, current=True)
    found = assess_booking(session("new", today + dt.timedelta(days=5)), restart, [], POLICY, NOW, course=current)
    assert [f.limit for f in of(found, SessionCheck.TOO_MANY_SESSIONS)] == [T.session_max_per_week_after_induction]


def test_an_elevated_current_bp_is_quoted_and_cites_the_label_s_bp_guide() -> None:
    reading = BloodPressureFact("bp", NOW.date() - dt.timedelta(days=T.session_bp_days), ABOVE[0] + 12, ABOVE[1] - 6)
    found = assess_booking(session("new", BOOKED), [], [reading], POLICY, NOW)
    assert found == [SessionFinding(SessionCheck.BP_ELEVATED_BEFORE, Urgency.WARNING, BP_RULE, reading=reading)]


def test_the_latest_reading_is_the_current_bp_whatever_the_order_of_the_records() -> None:
    older = BloodPressureFact("old", NOW.date() - dt.timedelta(days=3), ABOVE[0] + 20, ABOVE[1] + 10)
    newer = BloodPressureFact("new", NOW.date() - dt.timedelta(days=1), ABOVE[0] - 10, ABOVE[1] - 10)
    assert assess_booking(session("new", BOOKED), [], [older, newer], POLICY, NOW) == []
    assert assess_booking(session("new", BOOKED), [], [newer, older], POLICY, NOW) == []


def test_booking_data_that_could_not_be_fetched_is_a_warning() -> None:
    found = assess_booking(session("new", BOOKED), [], [], POLICY, NOW, frozenset({DataDomain.BLOOD_PRESSURE}))
    assert found == [SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS,
                                    unknown=(DataDomain.BLOOD_PRESSURE.value,))]


def test_what_could_not_be_fetched_is_never_judged_from_the_part_that_came() -> None:
    # Some appointments or readings came, but the search was incomplete: the schedule and the current BP are
    # unknown, so neither a same-day session nor a high reading among what came is reported as a finding.
    same_day = session("other", BOOKED)
    high = BloodPressureFact("high", NOW.date(), ABOVE[0] + 20, ABOVE[1] + 10)
    found = assess_booking(session("new", BOOKED), [same_day], [high], POLICY, NOW,
                           frozenset({DataDomain.APPOINTMENTS, DataDomain.BLOOD_PRESSURE}))
    assert found == [SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, TWO_HOURS,
                                    unknown=(DataDomain.APPOINTMENTS.value, DataDomain.BLOOD_PRESSURE.value))]


def test_transport_not_noted_is_information_citing_the_monitoring_rule() -> None:
    found = assess_booking(session("new", BOOKED, transport=False), [], [], POLICY, NOW)
    assert found == [SessionFinding(SessionCheck.ARRANGE_TRANSPORT, Urgency.INFO, TWO_HOURS)]


# -- the ends of the calendar: the rules saturate instead of overflowing -------------------------------------------

def test_days_past_either_end_of_the_calendar_are_held_at_that_end() -> None:
    assert _plus_days(dt.date.max, dt.timedelta(days=1)) == dt.date.max
    assert _plus_days(dt.date.max - dt.timedelta(days=3), dt.timedelta(weeks=4)) == dt.date.max
    assert _plus_days(dt.date.min, -dt.timedelta(days=7)) == dt.date.min
    assert _plus_days(dt.date(2026, 11, 1), dt.timedelta(days=7)) == dt.date(2026, 11, 8)


def test_a_booking_in_the_calendar_s_last_week_is_still_in_induction() -> None:
    # Its induction would end past the calendar: held at its last day, the booking is within it.
    booked = dt.date.max - dt.timedelta(days=1)
    sessions = [session("a", booked - dt.timedelta(days=2)), session("b", booked - dt.timedelta(days=1))]
    found = assess_booking(session("new", booked), sessions, [], POLICY, NOW)
    assert [f.limit for f in of(found, SessionCheck.TOO_MANY_SESSIONS)] == [T.session_max_per_week_induction]


def test_a_reading_on_the_calendar_s_first_day_is_recent_for_a_clock_on_that_day() -> None:
    first_day = dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=14)))
    reading = BloodPressureFact("bp", dt.date.min, ABOVE[0] + 20, ABOVE[1] + 10)
    found = assess_booking(session("new", BOOKED), [], [reading], POLICY, first_day)
    assert of(found, SessionCheck.BP_ELEVATED_BEFORE) != []

"""The session rules as pure functions, at their boundaries, with a fixed clock."""

from __future__ import annotations

import datetime as dt

import pytest

from eligibility import SessionCheck, Urgency, assess_booking, assess_discharge, load_policy
from fhir_mapping import (
    Administration,
    BloodPressureFact,
    DataDomain,
    EncounterFact,
    SessionAppointment,
    TimedBloodPressure,
)

POLICY = load_policy("default")
T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
DOSE = Administration("dose-1", T0, "Spravato 56 mg", esketamine=True)
OUTPATIENT = EncounterFact("enc-1", True, "AMB")


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def bp(minutes: float, systolic: float, diastolic: float) -> TimedBloodPressure:
    return TimedBloodPressure(f"bp-{minutes:g}", at(minutes), systolic, diastolic)


def checks(findings: object) -> list[SessionCheck]:
    return [f.check for f in getattr(findings, "findings", findings)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("elapsed", "too_early"), [(0, True), (119, True), (119.9, True), (120, False), (300, False)])
def test_discharge_needs_two_hours_after_the_last_dose(elapsed: float, too_early: bool) -> None:
    result = assess_discharge([DOSE], [bp(40, 130, 80)], OUTPATIENT, POLICY, at(elapsed))
    assert (SessionCheck.DISCHARGE_TOO_EARLY in checks(result)) is too_early
    if too_early:
        finding = result.findings[0]
        assert finding.urgency is Urgency.CRITICAL and finding.earliest == at(120)


def test_the_last_of_several_doses_sets_the_clock() -> None:
    second = Administration("dose-2", at(10), "Spravato 28 mg", esketamine=True)
    result = assess_discharge([DOSE, second], [bp(50, 130, 80)], OUTPATIENT, POLICY, at(125))
    assert result.last_dose == second and SessionCheck.DISCHARGE_TOO_EARLY in checks(result)


@pytest.mark.parametrize(("readings", "expected"), [
    ([], SessionCheck.NO_BP_AFTER_DOSE),
    ([bp(-10, 130, 80)], SessionCheck.NO_BP_AFTER_DOSE),  # before the dose only
    ([bp(40, 156, 98), bp(100, 158, 96)], SessionCheck.BP_NOT_DECREASING),  # systolic up: not decreasing
    ([bp(40, 150, 92)], SessionCheck.BP_NOT_DECREASING),  # one reading after, nothing to compare: above
    ([bp(-5, 160, 100), bp(40, 150, 95)], None),  # above 140/90 but falling from the reading before
    ([bp(40, 156, 98), bp(100, 140, 90)], None),  # at 140/90 is not above
    ([bp(40, 138, 86)], None),
])
def test_blood_pressure_after_the_dose(readings: list[TimedBloodPressure], expected: SessionCheck | None) -> None:
    found = [c for c in checks(assess_discharge([DOSE], readings, OUTPATIENT, POLICY, at(150)))
             if c in (SessionCheck.NO_BP_AFTER_DOSE, SessionCheck.BP_NOT_DECREASING)]
    assert found == ([expected] if expected else [])


def test_outpatient_after_care_but_not_inpatient() -> None:
    assert checks(assess_discharge([DOSE], [bp(40, 130, 80)], OUTPATIENT, POLICY, at(150))) == [
        SessionCheck.OUTPATIENT_AFTERCARE]
    inpatient = EncounterFact("enc-1", False, "IMP")
    assert checks(assess_discharge([DOSE], [bp(40, 130, 80)], inpatient, POLICY, at(150))) == []
    unclear = EncounterFact("enc-1", None, "")
    result = assess_discharge([DOSE], [bp(40, 130, 80)], unclear, POLICY, at(150))
    assert checks(result) == [SessionCheck.OUTPATIENT_AFTERCARE] and result.findings[0].outpatient is None


def test_nothing_given_is_silent_but_nothing_known_is_a_warning() -> None:
    assert checks(assess_discharge([], [], OUTPATIENT, POLICY, at(150))) == []
    unknown = frozenset({DataDomain.ADMINISTRATIONS, DataDomain.SESSION_BLOOD_PRESSURE})
    result = assess_discharge([], [], OUTPATIENT, POLICY, at(150), unknown)
    assert checks(result) == [SessionCheck.CHECKS_NOT_MADE]
    assert result.findings[0].unknown == ("administrations", "session_blood_pressure")
    partly = assess_discharge([DOSE], [], OUTPATIENT, POLICY, at(150),
                              frozenset({DataDomain.SESSION_BLOOD_PRESSURE}))
    assert SessionCheck.CHECKS_NOT_MADE in checks(partly) and SessionCheck.NO_BP_AFTER_DOSE not in checks(partly)


def session(sid: str, day: int, minutes: float = 150, transport: bool = True) -> SessionAppointment:
    start = dt.datetime(2026, 11, day, 9, 0, tzinfo=dt.UTC)
    return SessionAppointment(sid, start, start + dt.timedelta(minutes=minutes), "booked", True, True, transport,
                              "appointment text")


NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("minutes", "short"), [(134, True), (135, False), (60, True), (240, False)])
def test_the_slot_must_hold_the_dose_and_two_hours(minutes: float, short: bool) -> None:
    found = assess_booking(session("new", 3, minutes), [], [], POLICY, NOW)
    assert (SessionCheck.SLOT_TOO_SHORT in checks(found)) is short


def test_the_schedule_counts_any_seven_days_twice_weekly_in_induction_then_weekly() -> None:
    # Induction (first session 28 Oct): two in 7 days is the most.
    assert SessionCheck.TOO_MANY_SESSIONS not in checks(assess_booking(session("new", 3), [], [], POLICY, NOW))
    prior = [SessionAppointment("a", dt.datetime(2026, 10, 28, 9, tzinfo=dt.UTC), None, "fulfilled", True, True,
                                True, ""),
             SessionAppointment("b", dt.datetime(2026, 10, 30, 9, tzinfo=dt.UTC), None, "booked", True, True, True,
                                "")]
    found = assess_booking(session("new", 3), prior, [], POLICY, NOW)
    too_many = [f for f in found if f.check is SessionCheck.TOO_MANY_SESSIONS]
    assert too_many and too_many[0].limit == 2 and len(too_many[0].sessions) == 3
    assert SessionCheck.TOO_MANY_SESSIONS not in checks(assess_booking(session("new", 4), prior, [], POLICY, NOW))
    # After induction (first session more than 4 weeks before): weekly.
    long_ago = SessionAppointment("first", dt.datetime(2026, 9, 20, 9, tzinfo=dt.UTC), None, "fulfilled", True,
                                  True, True, "")
    weekly = [long_ago, SessionAppointment("c", dt.datetime(2026, 10, 30, 9, tzinfo=dt.UTC), None, "booked", True,
                                           True, True, "")]
    found = assess_booking(session("new", 3), weekly, [], POLICY, NOW)
    assert [f.limit for f in found if f.check is SessionCheck.TOO_MANY_SESSIONS] == [1]
    assert SessionCheck.TOO_MANY_SESSIONS not in checks(assess_booking(session("new", 6), weekly, [], POLICY, NOW))


@pytest.mark.parametrize(("day", "systolic", "diastolic", "warned"), [
    (dt.date(2026, 10, 30), 152, 94, True), (dt.date(2026, 10, 30), 140, 90, False),
    (dt.date(2026, 10, 30), 130, 91, True), (dt.date(2026, 10, 20), 170, 100, False),  # older than 7 days
])
def test_an_elevated_recent_bp_is_checked_before_dosing(day: dt.date, systolic: float, diastolic: float,
                                                        warned: bool) -> None:
    reading = BloodPressureFact("bp", day, systolic, diastolic)
    found = assess_booking(session("new", 3), [], [reading], POLICY, NOW)
    assert (SessionCheck.BP_ELEVATED_BEFORE in checks(found)) is warned


def test_transport_and_unknown_data_at_booking() -> None:
    assert checks(assess_booking(session("new", 3, transport=False), [], [], POLICY, NOW)) == [
        SessionCheck.ARRANGE_TRANSPORT]
    unknown = frozenset({DataDomain.APPOINTMENTS, DataDomain.BLOOD_PRESSURE})
    found = assess_booking(session("new", 3), [], [], POLICY, NOW, unknown)
    assert checks(found) == [SessionCheck.CHECKS_NOT_MADE] and found[0].unknown == ("appointments",
                                                                                    "blood_pressure")


# The schedule of a course already under way (issue #23): its first dose dates the phase, its doses count.

def _session(day: dt.date, sid: str = "appt-new") -> SessionAppointment:
    start = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
    return SessionAppointment(sid, start, start + dt.timedelta(minutes=150), "booked", True, True, True, "text")


def _course(first_days_ago: int, dose_days_ago: tuple[int, ...], latest: tuple[int, float] | None,
            baseline: float = 20) -> object:
    from eligibility import assess_course
    from fhir_mapping import ClinicalFacts, ExposureKind, KetamineExposure, KetamineProduct, ObservationKind, ScoreFact

    today = T0.date()
    given = tuple(KetamineExposure(f"MedicationAdministration/a{d}", ExposureKind.ADMINISTRATION,
                                   KetamineProduct.ESKETAMINE_NASAL, "Spravato", today - dt.timedelta(days=d),
                                   today - dt.timedelta(days=d)) for d in sorted((first_days_ago, *dose_days_ago),
                                                                                  reverse=True))
    scores = [ScoreFact("base", ObservationKind.PHQ9_TOTAL, today - dt.timedelta(days=first_days_ago + 1), baseline)]
    if latest is not None:
        scores.append(ScoreFact("late", ObservationKind.PHQ9_TOTAL, today - dt.timedelta(days=latest[0]), latest[1]))
    return assess_course(ClinicalFacts(None, scores=tuple(scores), ketamine=given), POLICY, today)


def test_a_third_dose_in_one_induction_week_counts_the_doses_given() -> None:
    course = _course(10, (5, 2), None)  # doses 10, 5 and 2 days ago; booking tomorrow: three in 7 days
    found = assess_booking(_session(T0.date() + dt.timedelta(days=1)), [], [], POLICY, T0,
                           course=course)  # type: ignore[arg-type]
    (too_many,) = [f for f in found if f.check is SessionCheck.TOO_MANY_SESSIONS]
    assert too_many.limit == 2 and len(too_many.dates) == 3


def test_twice_weekly_in_induction_is_the_label_schedule() -> None:
    course = _course(10, (7,), None)
    found = assess_booking(_session(T0.date() + dt.timedelta(days=1)), [], [], POLICY, T0,
                           course=course)  # type: ignore[arg-type]
    assert SessionCheck.TOO_MANY_SESSIONS not in checks(found) and SessionCheck.SAME_DAY not in checks(found)


def test_two_sessions_on_one_day_are_warned() -> None:
    course = _course(10, (7, 0), None)  # a dose already given today
    found = assess_booking(_session(T0.date()), [], [], POLICY, T0, course=course)  # type: ignore[arg-type]
    assert SessionCheck.SAME_DAY in checks(found)


def test_more_than_weekly_after_induction_is_warned_from_the_course_start() -> None:
    # First dose 40 days ago (maintenance), one dose 3 days ago; a booking in 2 days makes two in 7 days. The
    # earliest *appointment* on record would have said induction.
    course = _course(40, (36, 33, 29, 26, 22, 19, 15, 3), (3, 8))
    found = assess_booking(_session(T0.date() + dt.timedelta(days=2)), [], [], POLICY, T0,
                           course=course)  # type: ignore[arg-type]
    (too_many,) = [f for f in found if f.check is SessionCheck.TOO_MANY_SESSIONS]
    assert too_many.limit == 1


def test_a_maintenance_session_while_the_benefit_is_unknown_is_warned() -> None:
    unknown = _course(40, (36, 33, 29, 26, 22, 19, 15), None)  # no PHQ-9 since the first dose
    found = assess_booking(_session(T0.date() + dt.timedelta(days=4)), [], [], POLICY, T0,
                           course=unknown)  # type: ignore[arg-type]
    assert SessionCheck.BENEFIT_NOT_ASSESSED in checks(found)
    responded = _course(40, (36, 33, 29, 26, 22, 19, 15), (5, 8))
    found = assess_booking(_session(T0.date() + dt.timedelta(days=4)), [], [], POLICY, T0,
                           course=responded)  # type: ignore[arg-type]
    assert SessionCheck.BENEFIT_NOT_ASSESSED not in checks(found)


# -- other encounters, left-out records, the edges of time (issue 21 items 1-2) -----------------------------------
@pytest.mark.parametrize(("minutes_before", "counts"), [(0, True), (119.9, True), (120, False), (600, False),
                                                        (-30, True)])
def test_a_dose_of_another_encounter_counts_only_within_the_monitoring_window(minutes_before: float,
                                                                           counts: bool) -> None:
    now = at(300)
    other = Administration("elsewhere", now - dt.timedelta(minutes=minutes_before), "Spravato", True,
                           other_encounter="Encounter/e2")
    result = assess_discharge([other], [], OUTPATIENT, POLICY, now)
    assert (result.last_dose == other) is counts
    assert (SessionCheck.DISCHARGE_TOO_EARLY in checks(result)) is counts
    left_out = next((f.left_out for f in result.findings if f.check is SessionCheck.RECORDS_LEFT_OUT), None)
    assert (left_out is None) is counts
    if not counts:
        assert left_out is not None and left_out.other_encounter == 1 and left_out.total == 1


def test_records_left_out_by_the_mapping_are_one_warning_beside_the_checks() -> None:
    from fhir_mapping import LeftOut

    result = assess_discharge([DOSE], [bp(40, 130, 80)], OUTPATIENT, POLICY, at(30), left_out=LeftOut(2, 0, 1))
    quality = [f for f in result.findings if f.check is SessionCheck.RECORDS_LEFT_OUT]
    assert len(quality) == 1 and quality[0].urgency is Urgency.WARNING and quality[0].left_out == LeftOut(2, 0, 1)
    assert SessionCheck.DISCHARGE_TOO_EARLY in checks(result)
    none_given = assess_discharge([], [], OUTPATIENT, POLICY, at(30), left_out=LeftOut(1))
    assert checks(none_given) == [SessionCheck.RECORDS_LEFT_OUT]  # not silent: a record was dropped
    unknown = assess_discharge([], [], None, POLICY, at(30), frozenset({DataDomain.ADMINISTRATIONS}), LeftOut(1))
    assert checks(unknown) == [SessionCheck.CHECKS_NOT_MADE, SessionCheck.RECORDS_LEFT_OUT]


@pytest.mark.parametrize("when", [dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.UTC),
                                  dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=14)))])
def test_instants_at_the_ends_of_the_calendar_never_overflow(when: dt.datetime) -> None:
    dose = Administration("edge", when, "Spravato", True)
    result = assess_discharge([dose], [], OUTPATIENT, POLICY, at(0))
    assert result.last_dose == dose
    edge = SessionAppointment("a", when, None, "booked", True, True, True, "appointment text")
    assess_booking(edge, [SessionAppointment("b", when, None, "booked", True, True, True, "appointment text")], [],
                   POLICY, when)

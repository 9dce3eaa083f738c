"""The esketamine label's and REMS's rules for each treatment session, as pure functions: at booking (slot length,
schedule, the current BP, transport) and at discharge (2 hours of monitoring after the last dose, blood pressure
after the dose, the outpatient after-care). No I/O; "now" is an argument, never the wall clock.

Data that could not be fetched makes its check impossible, and that is said (``CHECKS_NOT_MADE``), never silence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fhir_mapping import (
    Administration,
    BloodPressureFact,
    DataDomain,
    EncounterFact,
    LeftOut,
    SessionAppointment,
    TimedBloodPressure,
)

from .course import ResponseClass, TreatmentCourse
from .policy import Citation, Policy


class SessionCheck(StrEnum):
    SLOT_TOO_SHORT = "slot_too_short"
    TOO_MANY_SESSIONS = "too_many_sessions"
    BP_ELEVATED_BEFORE = "bp_elevated_before_session"
    ARRANGE_TRANSPORT = "arrange_transport"
    DISCHARGE_TOO_EARLY = "discharge_too_early"
    NO_BP_AFTER_DOSE = "no_bp_after_dose"
    BP_NOT_DECREASING = "bp_not_decreasing"
    OUTPATIENT_AFTERCARE = "outpatient_aftercare"
    CHECKS_NOT_MADE = "checks_not_made"
    #: A second session (or a dose already given) on the booked day.
    SAME_DAY = "same_day"
    #: A session after induction while the course's benefit at the end of induction is unknown.
    BENEFIT_NOT_ASSESSED = "benefit_not_assessed"
    #: Records left out of the checks: another patient's or encounter's, or invalid (a data-quality problem).
    RECORDS_LEFT_OUT = "records_left_out"


class Urgency(StrEnum):
    """How urgent a session finding is (the CDS face maps it to a card indicator)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class SessionFinding:
    """One finding of a session check, with the facts it rests on and the policy's citation."""

    check: SessionCheck
    urgency: Urgency
    citation: Citation
    #: The numbers and times the wording needs (minutes, readings, dates): plain values, no prose.
    minutes: float | None = None
    required_minutes: float | None = None
    dose: Administration | None = None
    earliest: dt.datetime | None = None
    reading: TimedBloodPressure | BloodPressureFact | None = None
    previous: TimedBloodPressure | None = None
    sessions: tuple[SessionAppointment, ...] = ()
    limit: int | None = None
    unknown: tuple[str, ...] = ()
    outpatient: bool | None = None
    #: The days of the sessions and doses a schedule finding counts (doses given come from the course).
    dates: tuple[dt.date, ...] = ()
    #: What ``RECORDS_LEFT_OUT`` reports (counts only).
    left_out: LeftOut | None = None


@dataclass(frozen=True, slots=True)
class DischargeAssessment:
    findings: tuple[SessionFinding, ...]
    last_dose: Administration | None = None
    administrations: tuple[Administration, ...] = field(default=())


def _above(policy: Policy, systolic: float | None, diastolic: float | None) -> bool:
    t = policy.thresholds
    return (systolic is not None and systolic > t.session_bp_systolic_above) or (
        diastolic is not None and diastolic > t.session_bp_diastolic_above)


def _plus(at: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``at + delta``, held at the last representable instant: a fact built from a date near year 9999 must give a
    far-future answer, not an OverflowError (the mapping already refuses such dates; the rules do not rely on it)."""
    try:
        return at + delta
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=at.tzinfo)


def _plus_days(day: dt.date, delta: dt.timedelta) -> dt.date:
    """``day + delta`` (whole days, as date arithmetic counts them), held at the first or last day of the calendar."""
    ordinal = day.toordinal() + delta.days
    return dt.date.fromordinal(min(max(ordinal, dt.date.min.toordinal()), dt.date.max.toordinal()))


def left_out_finding(left_out: LeftOut, policy: Policy) -> SessionFinding | None:
    """A data-quality finding when records were left out of the session checks (None when none were)."""
    if not left_out.total:
        return None
    return SessionFinding(SessionCheck.RECORDS_LEFT_OUT, Urgency.WARNING, policy.cite("session_monitoring_minutes"),
                          left_out=left_out)


def _busiest_week(start: dt.date, days: Sequence[dt.date]) -> list[dt.date]:
    """The most sessions in any 7 consecutive days that contain ``start``."""
    best: list[dt.date] = []
    for offset in range(7):
        first = _plus_days(start, -dt.timedelta(days=6 - offset))
        inside = sorted(d for d in days if first <= d < _plus_days(first, dt.timedelta(days=7)))
        if len(inside) > len(best):
            best = inside
    return best


@dataclass(frozen=True, slots=True)
class _Schedule:
    """The booked day against the patient's other sessions and the doses already given."""

    booked: dt.date
    #: The other sessions with a start, this one left out.
    others: tuple[SessionAppointment, ...]
    #: The booked day first, then the other sessions' days and the days of doses given without a session on record.
    days: tuple[dt.date, ...]
    induction: bool
    limit: int
    #: The current course, when there is one.
    course: TreatmentCourse | None


@dataclass(frozen=True, slots=True)
class _Booking:
    """What the booking checks read: the appointment, its schedule (None when it cannot be known), the latest blood
    pressure of the recent days (None when there is none or blood pressures are unknown)."""

    appointment: SessionAppointment
    schedule: _Schedule | None
    latest_bp: BloodPressureFact | None
    unknown: frozenset[DataDomain]
    policy: Policy


def _schedule(appointment: SessionAppointment, other_sessions: Sequence[SessionAppointment], policy: Policy,
              course: TreatmentCourse | None) -> _Schedule | None:
    """With a current course, its first dose dates the phase and its doses already given count in the schedule
    (label dosing [S8, S62]); without one, the earliest session booked stands for the first dose."""
    if appointment.start is None:
        return None
    t = policy.thresholds
    booked = appointment.start.date()
    others = tuple(s for s in other_sessions if s.start is not None and s.id != appointment.id)
    session_days = [s.start.date() for s in others if s.start is not None]
    current = course if course is not None and course.current else None
    # A dose given counts once, whether or not its appointment is also on record.
    dose_days = [d for d in (current.dose_days if current else ()) if d not in session_days]
    if current is not None:
        induction = booked < current.induction_end
    else:
        first = min([booked, *session_days])
        induction = booked < _plus_days(first, dt.timedelta(weeks=t.session_induction_weeks))
    limit = t.session_max_per_week_induction if induction else t.session_max_per_week_after_induction
    return _Schedule(booked, others, (booked, *session_days, *dose_days), induction, limit, current)


def _latest_bp(blood_pressures: Sequence[BloodPressureFact], policy: Policy,
               now: dt.datetime) -> BloodPressureFact | None:
    since = _plus_days(now.date(), -dt.timedelta(days=policy.thresholds.session_bp_days))
    recent = [b for b in blood_pressures if b.day >= since]
    return max(recent, key=lambda b: b.day) if recent else None


def _slot_too_short(b: _Booking) -> SessionFinding | None:
    t = b.policy.thresholds
    required = t.session_dose_minutes + t.session_monitoring_minutes
    if b.appointment.minutes is not None and b.appointment.minutes < required:
        return SessionFinding(SessionCheck.SLOT_TOO_SHORT, Urgency.WARNING,
                              b.policy.cite("session_monitoring_minutes"), minutes=b.appointment.minutes,
                              required_minutes=required)
    return None


def _same_day(b: _Booking) -> SessionFinding | None:
    s = b.schedule
    if s is None or s.booked not in s.days[1:]:
        return None
    return SessionFinding(SessionCheck.SAME_DAY, Urgency.WARNING, b.policy.cite("session_max_per_week_induction"),
                          sessions=(*(o for o in s.others if o.start and o.start.date() == s.booked),
                                    b.appointment), dates=(s.booked,), limit=1)


def _too_many_sessions(b: _Booking) -> SessionFinding | None:
    s = b.schedule
    if s is None:
        return None
    week = _busiest_week(s.booked, s.days)
    if len(week) <= s.limit:
        return None
    in_week = tuple(o for o in s.others if o.start is not None and o.start.date() in week)
    return SessionFinding(
        SessionCheck.TOO_MANY_SESSIONS, Urgency.WARNING,
        b.policy.cite("session_max_per_week_induction" if s.induction else "session_max_per_week_after_induction"),
        sessions=(*in_week, b.appointment), limit=s.limit, dates=tuple(week))


def _benefit_not_assessed(b: _Booking) -> SessionFinding | None:
    s = b.schedule
    if s is None or s.course is None or s.induction or s.course.response is not ResponseClass.UNKNOWN:
        return None
    return SessionFinding(SessionCheck.BENEFIT_NOT_ASSESSED, Urgency.WARNING, b.policy.cite("session_induction_weeks"),
                          dates=(s.course.induction_end,))


def _bp_elevated_before(b: _Booking) -> SessionFinding | None:
    if b.latest_bp is None or not _above(b.policy, b.latest_bp.systolic, b.latest_bp.diastolic):
        return None
    return SessionFinding(SessionCheck.BP_ELEVATED_BEFORE, Urgency.WARNING, b.policy.cite("session_bp_systolic_above"),
                          reading=b.latest_bp)


def _booking_checks_not_made(b: _Booking) -> SessionFinding | None:
    missing = tuple(d.value for d in (DataDomain.APPOINTMENTS, DataDomain.BLOOD_PRESSURE) if d in b.unknown)
    if not missing:
        return None
    return SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, b.policy.cite("session_monitoring_minutes"),
                          unknown=missing)


def _arrange_transport(b: _Booking) -> SessionFinding | None:
    if b.appointment.transport_noted:
        return None
    return SessionFinding(SessionCheck.ARRANGE_TRANSPORT, Urgency.INFO, b.policy.cite("session_monitoring_minutes"))


#: The booking checks, in the order their findings are listed: one function per check, None when it finds nothing.
_BOOKING_CHECKS: dict[SessionCheck, Callable[[_Booking], SessionFinding | None]] = {
    SessionCheck.SLOT_TOO_SHORT: _slot_too_short,
    SessionCheck.SAME_DAY: _same_day,
    SessionCheck.TOO_MANY_SESSIONS: _too_many_sessions,
    SessionCheck.BENEFIT_NOT_ASSESSED: _benefit_not_assessed,
    SessionCheck.BP_ELEVATED_BEFORE: _bp_elevated_before,
    SessionCheck.CHECKS_NOT_MADE: _booking_checks_not_made,
    SessionCheck.ARRANGE_TRANSPORT: _arrange_transport,
}


def assess_booking(
    appointment: SessionAppointment,
    other_sessions: Sequence[SessionAppointment],
    blood_pressures: Sequence[BloodPressureFact],
    policy: Policy,
    now: dt.datetime,
    unknown: frozenset[DataDomain] = frozenset(),
    course: TreatmentCourse | None = None,
) -> list[SessionFinding]:
    """The session checks for a ketamine/esketamine appointment being booked (the assessment of whether to treat
    at all is the order-time rules', run beside these). With a current course, its first dose dates the phase and
    its doses already given count in the schedule (label dosing [S8, S62]); without one, the earliest session
    booked stands for the first dose. Data that could not be fetched leaves its checks unmade (``CHECKS_NOT_MADE``)."""
    booking = _Booking(
        appointment,
        None if DataDomain.APPOINTMENTS in unknown else _schedule(appointment, other_sessions, policy, course),
        None if DataDomain.BLOOD_PRESSURE in unknown else _latest_bp(blood_pressures, policy, now),
        unknown, policy)
    return [f for check in _BOOKING_CHECKS.values() if (f := check(booking)) is not None]


def assess_discharge(
    administrations: Sequence[Administration],
    pressures: Sequence[TimedBloodPressure],
    encounter: EncounterFact | None,
    policy: Policy,
    now: dt.datetime,
    unknown: frozenset[DataDomain] = frozenset(),
    left_out: LeftOut | None = None,
) -> DischargeAssessment:
    """The checks before discharging a patient from a session: none when nothing was given (and that is known).

    A dose of the patient recorded in another encounter counts when it was given within the monitoring window (the
    2-hour rule protects the patient whatever encounter the dose was charted in); an older one is left out and
    counted in ``left_out``, like the records the mapping left out."""
    t = policy.thresholds
    window = dt.timedelta(minutes=t.session_monitoring_minutes)
    counted = [a for a in administrations if a.other_encounter is None or now - a.at < window]
    left_out = (left_out or LeftOut()) + LeftOut(other_encounter=len(administrations) - len(counted))
    quality = left_out_finding(left_out, policy)
    extra = (quality,) if quality is not None else ()
    if DataDomain.ADMINISTRATIONS in unknown:
        gaps = tuple(d.value for d in (DataDomain.ADMINISTRATIONS, DataDomain.SESSION_BLOOD_PRESSURE,
                                       DataDomain.ENCOUNTER) if d in unknown)
        return DischargeAssessment((SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING,
                                                   policy.cite("session_monitoring_minutes"), unknown=gaps), *extra))
    if not counted:
        return DischargeAssessment(extra)
    last = max(counted, key=lambda a: a.at)
    checked = (_discharge_too_early(last, policy, now), _session_bp(last, pressures, policy, unknown),
               _aftercare(encounter, policy, unknown))
    findings = [f for f in checked if f is not None]
    return DischargeAssessment((*findings, *extra), last, tuple(counted))


def _discharge_too_early(last: Administration, policy: Policy, now: dt.datetime) -> SessionFinding | None:
    t = policy.thresholds
    elapsed = (now - last.at).total_seconds() / 60
    if elapsed < t.session_monitoring_minutes:
        return SessionFinding(
            SessionCheck.DISCHARGE_TOO_EARLY, Urgency.CRITICAL, policy.cite("session_monitoring_minutes"),
            minutes=max(elapsed, 0.0), required_minutes=t.session_monitoring_minutes, dose=last,
            earliest=_plus(last.at, dt.timedelta(minutes=t.session_monitoring_minutes)))
    return None


def _session_bp(last: Administration, pressures: Sequence[TimedBloodPressure], policy: Policy,
                unknown: frozenset[DataDomain]) -> SessionFinding | None:
    """The blood pressure since the last dose: missing, or still elevated and not falling from the reading before."""
    if DataDomain.SESSION_BLOOD_PRESSURE in unknown:
        return SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, policy.cite("session_bp_systolic_above"),
                              unknown=(DataDomain.SESSION_BLOOD_PRESSURE.value,), dose=last)
    ordered = sorted(pressures, key=lambda b: b.at)
    after = [b for b in ordered if b.at > last.at]
    if not after:
        return SessionFinding(SessionCheck.NO_BP_AFTER_DOSE, Urgency.WARNING, policy.cite("session_bp_systolic_above"),
                              dose=last)
    latest = after[-1]
    before = [b for b in ordered if b.at < latest.at]
    previous = before[-1] if before else None
    falling = previous is not None and all(
        now_v < then_v for now_v, then_v in ((latest.systolic, previous.systolic),
                                             (latest.diastolic, previous.diastolic))
        if now_v is not None and then_v is not None)
    if _above(policy, latest.systolic, latest.diastolic) and not falling:
        return SessionFinding(SessionCheck.BP_NOT_DECREASING, Urgency.WARNING,
                              policy.cite("session_bp_systolic_above"), reading=latest, previous=previous, dose=last)
    return None


def _aftercare(encounter: EncounterFact | None, policy: Policy,
               unknown: frozenset[DataDomain]) -> SessionFinding | None:
    if DataDomain.ENCOUNTER in unknown:
        return SessionFinding(SessionCheck.CHECKS_NOT_MADE, Urgency.WARNING, policy.cite("rems_form_days"),
                              unknown=(DataDomain.ENCOUNTER.value,))
    if encounter is None or encounter.outpatient is not False:
        return SessionFinding(SessionCheck.OUTPATIENT_AFTERCARE, Urgency.INFO, policy.cite("rems_form_days"),
                              outpatient=None if encounter is None else encounter.outpatient)
    return None

"""Session findings rendered as cards: what to do at booking and before discharge, in plain words, with the time or
reading that decides it and the label or REMS as the source."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from eligibility import Citation, SessionCheck, SessionFinding, Thresholds, Urgency, cited_source
from fhir_mapping import BloodPressureFact, GapReason, LeftOut, TimedBloodPressure

from .cards import _overrides, _source, _sources_line, _summary
from .markdown import markdown_code, markdown_text
from .models import Card, CardKind, Hook, Indicator
from .policy_words import blood_pressure, days, duration

#: Most urgent first: ``Urgency`` is declared in that order.
_URGENCY_ORDER = {u: rank for rank, u in enumerate(Urgency)}
_INDICATOR = {Urgency.CRITICAL: Indicator.CRITICAL, Urgency.WARNING: Indicator.WARNING, Urgency.INFO: Indicator.INFO}
_KIND = {
    SessionCheck.SLOT_TOO_SHORT: CardKind.SESSION_SLOT_TOO_SHORT,
    SessionCheck.TOO_MANY_SESSIONS: CardKind.SESSION_TOO_MANY,
    SessionCheck.BP_ELEVATED_BEFORE: CardKind.SESSION_BP_ELEVATED,
    SessionCheck.ARRANGE_TRANSPORT: CardKind.SESSION_TRANSPORT,
    SessionCheck.DISCHARGE_TOO_EARLY: CardKind.DISCHARGE_TOO_EARLY,
    SessionCheck.NO_BP_AFTER_DOSE: CardKind.DISCHARGE_NO_BP_AFTER_DOSE,
    SessionCheck.BP_NOT_DECREASING: CardKind.DISCHARGE_BP_NOT_DECREASING,
    SessionCheck.OUTPATIENT_AFTERCARE: CardKind.DISCHARGE_AFTERCARE,
    SessionCheck.CHECKS_NOT_MADE: CardKind.SESSION_CHECKS_NOT_MADE,
    SessionCheck.SAME_DAY: CardKind.SESSION_TOO_MANY,
    SessionCheck.BENEFIT_NOT_ASSESSED: CardKind.SESSION_BENEFIT_NOT_ASSESSED,
    SessionCheck.RECORDS_LEFT_OUT: CardKind.SESSION_RECORDS_LEFT_OUT,
}
# Why a clinician would go on despite the card (none for reminders: nothing to override).
_OVERRIDES = {
    SessionCheck.DISCHARGE_TOO_EARLY: ("assessed-stable", "chart-data-incorrect", "specialist-decision"),
    SessionCheck.NO_BP_AFTER_DOSE: ("reading-not-in-chart", "assessed-stable"),
    SessionCheck.BP_NOT_DECREASING: ("reading-not-in-chart", "assessed-stable", "specialist-decision"),
    SessionCheck.BP_ELEVATED_BEFORE: ("reading-not-in-chart", "benefit-outweighs-risk", "specialist-decision"),
    SessionCheck.SLOT_TOO_SHORT: ("chart-data-incorrect", "specialist-decision"),
    SessionCheck.TOO_MANY_SESSIONS: ("specialist-decision", "chart-data-incorrect"),
    SessionCheck.CHECKS_NOT_MADE: ("assessed-stable", "specialist-decision"),
    SessionCheck.SAME_DAY: ("chart-data-incorrect", "specialist-decision"),
    SessionCheck.BENEFIT_NOT_ASSESSED: ("workup-done-elsewhere", "specialist-decision"),
    SessionCheck.RECORDS_LEFT_OUT: ("chart-data-incorrect", "assessed-stable"),
}
_DOMAIN_WORDS = {"appointments": "the patient's other appointments", "blood_pressure": "recent blood pressures",
                 "administrations": "the doses given in this encounter",
                 "session_blood_pressure": "the blood pressures taken in this encounter",
                 "encounter": "the encounter (inpatient or outpatient)"}


def _left_out_words(left_out: LeftOut) -> str:
    parts = []
    for count, what in ((left_out.other_patient, "not about this patient"),
                        (left_out.other_encounter, "of another encounter"),
                        (left_out.invalid, "invalid (not valid FHIR, or a date that cannot be right)")):
        if count:
            parts.append(f"{count} record{'s' if count > 1 else ''} {what}")
    return "; ".join(parts)


def _clock(at: dt.datetime, tz: dt.tzinfo | None) -> str:
    """A time as the clinician's clock shows it: in the site's display time zone when one is configured, else in the
    offset the EHR recorded it with."""
    return (at.astimezone(tz) if tz is not None else at).strftime("%H:%M")


def _mmhg(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _reading(b: TimedBloodPressure | BloodPressureFact | None) -> str:
    return "?/?" if b is None else f"{_mmhg(b.systolic)}/{_mmhg(b.diastolic)}"


def _basis(citation: Citation) -> str:
    """How firmly the sources hold the threshold, in the detail (never in the source label)."""
    if not any(s.primary for s in citation.sources):
        return "Local clinic policy; no primary source."
    return "" if citation.verified else "The exact value is not confirmed by the sources (see the policy file)."


#: A card's words for one finding: (summary, detail lines, the primary sources to link).
_Words = tuple[str, list[str], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _View:
    """What the wording needs beside the finding: the product's name, the site's display time zone and the policy's
    thresholds (every number a card states is the policy's)."""

    product: str
    tz: dt.tzinfo | None
    limits: Thresholds

    @property
    def monitoring(self) -> str:
        return duration(self.limits.session_monitoring_minutes)

    @property
    def monitoring_short(self) -> str:
        return duration(self.limits.session_monitoring_minutes, short=True)

    @property
    def bp_limit(self) -> str:
        return blood_pressure(self.limits.session_bp_systolic_above, self.limits.session_bp_diastolic_above)


def _slot_too_short(f: SessionFinding, v: _View) -> _Words:
    return (f"Session slot {f.minutes:g} min: needs {f.required_minutes:g} min (dose + {v.monitoring_short} "
            "monitoring)",
            [f"The slot is **{f.minutes:g} minutes**. Each session needs the dose and then **at least "
             f"{v.monitoring} of monitoring**, until sedation, dissociation and respiratory depression have resolved "
             f"({f.required_minutes:g} minutes in all under this policy). Book a longer slot."], ("S1", "S3"))


def _same_day(f: SessionFinding, v: _View) -> _Words:
    booked = f.dates[0].isoformat() if f.dates else "the booked day"
    return (f"Two sessions on {booked}: one dose a day",
            [f"Another session or a dose already given is on record for **{booked}**.",
             "The dosing schedule gives one dose per session: twice weekly in weeks 1-4, weekly in weeks 5-8, "
             "then weekly or every 2 weeks."], ("S8", "S62"))


def _benefit_not_assessed(f: SessionFinding, v: _View) -> _Words:
    end = f.dates[0].isoformat() if f.dates else "the end of induction"
    return ("Maintenance session: benefit at the end of induction not assessed",
            [f"Induction ended on **{end}** and no current PHQ-9 shows the response since the first dose.",
             "The label asks that the evidence of therapeutic benefit be evaluated at the end of induction to "
             "determine the need for continued treatment: a PHQ-9 at this visit documents it."], ("S62",))


def _too_many_sessions(f: SessionFinding, v: _View) -> _Words:
    dates = ", ".join(sorted({d.isoformat() for d in f.dates} | {s.start.date().isoformat() for s in f.sessions
                                                                 if s.start is not None}))
    phase = "during induction (weeks 1-4)" if f.limit and f.limit > 1 else "after induction"
    count = len(f.dates) or len(f.sessions)
    return (f"{count} sessions in 7 days: the schedule allows {f.limit} {phase}",
            [f"Sessions in the same 7 days: {dates}.",
             f"The dosing schedule allows at most **{f.limit}** session(s) in any 7 days {phase}: twice weekly "
             "in weeks 1-4, weekly in weeks 5-8, then weekly or every 2 weeks."], ("S8",))


def _bp_elevated_before(f: SessionFinding, v: _View) -> _Words:
    day = getattr(f.reading, "day", None)
    when = f" on {day.day} {day:%b}" if isinstance(day, dt.date) else ""
    return (f"BP {_reading(f.reading)}{when}: check BP before dosing; consider delaying",
            [f"The latest blood pressure in the last {days(v.limits.session_bp_days)} is **{_reading(f.reading)} "
             f"mmHg**{when}.",
             f"The label: assess blood pressure before each dose; above {v.bp_limit} mmHg (a general guide), weigh "
             "delaying the session against its benefit."], ("S1",))


def _arrange_transport(f: SessionFinding, v: _View) -> _Words:
    return ("No driving until the next day after restful sleep: arrange transport",
            ["No transport is noted on the appointment. After each session the patient must not drive or "
             "operate machinery until the next day after a restful sleep: arrange a ride home."], ("S1",))


def _discharge_too_early(f: SessionFinding, v: _View) -> _Words:
    assert f.dose is not None
    assert f.earliest is not None
    given, earliest = _clock(f.dose.at, v.tz), _clock(f.earliest, v.tz)
    # The encounter a dose of the patient was charted in, when it is not the one being discharged: it counts
    # all the same (the monitoring rule protects the patient whatever the bookkeeping), and the card says where.
    where = (f", recorded in another encounter (`{markdown_code(f.dose.other_encounter)}`)"
             if f.dose.other_encounter else "")
    return (f"{v.product} given {given}: discharge not before {earliest} ({v.monitoring_short} monitoring)",
            [f"The last dose (**{markdown_text(f.dose.name)}**, `{markdown_code(f.dose.reference)}`{where}) was "
             f"given at **{given}** ({f.minutes:.0f} minutes ago).",
             f"Monitor for at least {v.monitoring} after the dose, until sedation, dissociation and respiratory "
             f"depression have resolved and the patient is clinically stable: **earliest discharge "
             f"{earliest}**."], ("S1", "S3"))


def _no_bp_after_dose(f: SessionFinding, v: _View) -> _Words:
    dose = f" (dose at {_clock(f.dose.at, v.tz)})" if f.dose else ""
    return ("No blood pressure after the dose: recheck before discharge",
            [f"No blood pressure is recorded in this encounter after the dose{dose}.",
             f"The label: recheck blood pressure about {duration(v.limits.session_bp_recheck_minutes)} after the "
             "dose and then as clinically "
             "warranted until values decline."], ("S1",))


def _bp_not_decreasing(f: SessionFinding, v: _View) -> _Words:
    assert isinstance(f.reading, TimedBloodPressure)
    before = (f", after {_reading(f.previous)} at {_clock(f.previous.at, v.tz)}" if f.previous is not None
              else "")
    at = _clock(f.reading.at, v.tz)
    return (f"BP {_reading(f.reading)} at {at} not yet decreasing: reassess before discharge",
            [f"The latest reading after the dose is **{_reading(f.reading)} mmHg at {at}**"
             f"{before}: above {v.bp_limit} mmHg and not lower than the one before.",
             "The label: keep checking blood pressure until values decline; if it stays high, get help "
             "promptly; symptoms of hypertensive crisis or encephalopathy need emergency care."], ("S1",))


def _outpatient_aftercare(f: SessionFinding, v: _View) -> _Words:
    lead = "Outpatient session" if f.outpatient else "If outpatient"
    within = days(v.limits.rems_form_days)
    return (f"{lead}: REMS monitoring form within {within}; no driving until the next day",
            [f"- Complete and submit the **REMS Patient Monitoring Form** for this session within {within} "
             "(outpatient settings; inpatient settings do not need it).",
             "- The patient must not drive until the next day after a restful sleep."], ("S3", "S4", "S1"))


def _records_left_out(f: SessionFinding, v: _View) -> _Words:
    assert f.left_out is not None
    n = f.left_out.total
    return (f"{n} record{'s' if n > 1 else ''} left out of the session checks: check the chart's data",
            [f"Left out: {_left_out_words(f.left_out)}. They were not used for these checks and are not quoted "
             "here.",
             "Records of another patient or encounter in this patient's data point to a charting or interface "
             "error: check the doses and blood pressures in the chart before relying on these cards."],
            ("S1",))


def _checks_not_made(f: SessionFinding, v: _View) -> _Words:
    missing = ", ".join(_DOMAIN_WORDS.get(d, d) for d in f.unknown)
    return ("Session checks could not be made: data could not be fetched",
            [f"Could not obtain: {missing}. The checks that need them were **not made** (unknown, not passed): "
             "check them by hand before proceeding."], ("S1", "S3"))


#: How each check is worded on its card: one function per check, every check has one.
_WORDING: dict[SessionCheck, Callable[[SessionFinding, _View], _Words]] = {
    SessionCheck.SLOT_TOO_SHORT: _slot_too_short,
    SessionCheck.SAME_DAY: _same_day,
    SessionCheck.BENEFIT_NOT_ASSESSED: _benefit_not_assessed,
    SessionCheck.TOO_MANY_SESSIONS: _too_many_sessions,
    SessionCheck.BP_ELEVATED_BEFORE: _bp_elevated_before,
    SessionCheck.ARRANGE_TRANSPORT: _arrange_transport,
    SessionCheck.DISCHARGE_TOO_EARLY: _discharge_too_early,
    SessionCheck.NO_BP_AFTER_DOSE: _no_bp_after_dose,
    SessionCheck.BP_NOT_DECREASING: _bp_not_decreasing,
    SessionCheck.OUTPATIENT_AFTERCARE: _outpatient_aftercare,
    SessionCheck.RECORDS_LEFT_OUT: _records_left_out,
    SessionCheck.CHECKS_NOT_MADE: _checks_not_made,
}


def session_cards(findings: Iterable[SessionFinding], product: str, thresholds: Thresholds,
                  tz: dt.tzinfo | None = None) -> list[Card]:
    """One card per finding, critical first; the numbers the policy's ``thresholds``; times in ``tz`` (the site's
    display time zone) when given."""
    cards = []
    view = _View(product, tz, thresholds)
    for f in sorted(findings, key=lambda f: _URGENCY_ORDER[f.urgency]):
        summary, detail, source_ids = _WORDING[f.check](f, view)
        basis = _basis(f.citation)
        lines = [*detail, *([basis] if basis else []), "", _sources_line(*source_ids)]
        cards.append(Card(
            kind=_KIND[f.check], uuid=str(uuid.uuid4()), summary=_summary(summary), detail="\n\n".join(
                line for line in lines if line is not None).replace("\n\n- ", "\n- "),
            indicator=_INDICATOR[f.urgency], source=_source(f.citation, cited_source(source_ids[0])),
            overrideReasons=_overrides(_OVERRIDES[f.check]) if f.check in _OVERRIDES else None))
    return cards


#: Why the data could not be had, as the card says it (the failures of fetching; "not found" is a 412).
BLIND_REASONS: dict[GapReason, str] = {
    GapReason.NETWORK_ERROR: "FHIR server unreachable",
    GapReason.TIMEOUT: "FHIR server did not answer in time",
    GapReason.BUDGET_EXCEEDED: "FHIR server did not answer in time",
    GapReason.UNAUTHORIZED: "access to the FHIR server refused",
    GapReason.FORBIDDEN: "access to the FHIR server refused",
    GapReason.SERVER_ERROR: "FHIR server error",
    GapReason.MALFORMED: "FHIR server's answer unreadable",
    GapReason.REJECTED: "FHIR server refused the search",
    GapReason.TOO_LARGE: "FHIR server's answer too large",
}
# {period} and {period_adjective}: the policy's monitoring period, in words.
_BLIND_CHECKS = {
    Hook.ENCOUNTER_DISCHARGE: ("Discharge",
                               "The {period_adjective} observation and blood-pressure checks could not be made",
                               "the time of the last dose (at least {period} of monitoring before discharge), blood "
                               "pressure after the dose until it declines, and the REMS monitoring form for an "
                               "outpatient session"),
    Hook.APPOINTMENT_BOOK: ("Session", "The session checks and the patient's assessment could not be made",
                            "the slot (the dose and {period} of monitoring), the dosing schedule, the blood pressure "
                            "before dosing, transport home, and the contraindications"),
}


def blind_card(hook: Hook, reasons: Iterable[GapReason], citation: Citation, thresholds: Thresholds) -> Card:
    """The one card of a session service that could not get the patient's data: a warning that the checks were not
    made and why, never a 412 the EHR shows as nothing; the monitoring period the policy's ``thresholds``."""
    words = list(dict.fromkeys(BLIND_REASONS.get(r, "data could not be fetched") for r in reasons)) or [
        "data could not be fetched"]
    minutes = thresholds.session_monitoring_minutes
    period = {"period": duration(minutes), "period_adjective": duration(minutes, adjective=True)}
    templates = _BLIND_CHECKS.get(hook, _BLIND_CHECKS[Hook.APPOINTMENT_BOOK])
    what, lead, manual = (text.format_map(period) for text in templates)
    return Card(
        kind=CardKind.SESSION_CHECKS_NOT_MADE, uuid=str(uuid.uuid4()),
        summary=_summary(f"{what} checks not made: {words[0]} — check manually"),
        detail="\n\n".join([f"{lead}: **{', '.join(words)}** — check manually: {manual}.",
                            "These checks were **not made** (unknown, not passed).", _sources_line("S1", "S3")]),
        indicator=Indicator.WARNING, source=_source(citation, cited_source("S1")),
        overrideReasons=_overrides(_OVERRIDES[SessionCheck.CHECKS_NOT_MADE]))

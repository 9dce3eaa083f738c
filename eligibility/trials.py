"""Antidepressant trials: adequacy (dose and duration), outcome (PHQ-9 response), treatment resistance."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fhir_mapping import ClinicalFacts, Course, DataDomain, DoseSource, GapReason, ObservationKind

from .dates import months_before
from .model import Adequacy, Criterion, Outcome, Score, TreatmentResistance, TrialAssessment
from .policy import Policy


def _union_days(intervals: list[tuple[dt.date, dt.date]]) -> int:
    total, cur_start, cur_end = 0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += (cur_end - cur_start).days
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += (cur_end - cur_start).days
    return total


def _latest_phq9(facts: ClinicalFacts, lo: dt.date, hi: dt.date) -> Score | None:
    best = None
    for s in facts.scores:
        if s.kind is ObservationKind.PHQ9_TOTAL and lo <= s.day <= hi and (best is None or s.day >= best.day):
            best = s
    return Score(best.value, best.day, best.reference, best.note) if best else None


@dataclass(frozen=True, slots=True)
class _Exposure:
    """How long the course ran inside the look-back, how long at an adequate dose, and what could still be."""

    adequacy: Adequacy
    total_days: int
    adequate_days: int
    duration_unknown: bool
    notes: tuple[str, ...]


def _adequacy(course: Course, floor: float | None, policy: Policy, as_of: dt.date) -> _Exposure:
    t = policy.thresholds
    window_start = months_before(as_of, t.trial_lookback_months)
    all_spans: list[tuple[dt.date, dt.date]] = []
    adequate_spans: list[tuple[dt.date, dt.date]] = []
    unknown_dose_spans: list[tuple[dt.date, dt.date]] = []
    # A last record of unknown length may have gone on for weeks: it could still make the trial adequate.
    open_length = any(not s.length_known and (s.daily_mg is None or floor is None or s.daily_mg >= floor)
                      and s.start <= as_of for s in course.segments)
    for seg in course.segments:
        start = max(seg.start, window_start)
        end = min(as_of if seg.end is None else seg.end, as_of)
        if end <= start:
            continue
        all_spans.append((start, end))
        if seg.daily_mg is None:
            unknown_dose_spans.append((start, end))
        elif floor is not None and seg.daily_mg >= floor:
            adequate_spans.append((start, end))
    min_days = t.trial_min_weeks * 7
    adequate_days = _union_days(adequate_spans)
    possible_days = _union_days(adequate_spans + unknown_dose_spans)
    notes: list[str] = []
    if floor is None:
        adequacy = Adequacy.UNKNOWN
        notes.append(f"no adequate-dose floor for {course.ingredient} in the policy")
    elif adequate_days >= min_days:
        adequacy = Adequacy.ADEQUATE
    elif possible_days >= min_days:
        adequacy = Adequacy.UNKNOWN
        notes.append("dose not documented for part of the course")
    elif open_length:
        adequacy = Adequacy.UNKNOWN
        notes.append("how long the drug was taken is not documented")
    else:
        adequacy = Adequacy.INADEQUATE
    duration_unknown = adequacy is Adequacy.UNKNOWN and open_length and possible_days < min_days
    return _Exposure(adequacy, _union_days(all_spans), adequate_days, duration_unknown, tuple(notes))


def _outcome(course: Course, facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> tuple[
        Outcome, Score | None, Score | None, tuple[str, ...]]:
    """Response by PHQ-9: the latest score around the start (baseline) against the latest from the course's
    midpoint to shortly after its end (follow-up)."""
    t = policy.thresholds
    start, end = course.start, course.end(as_of)
    midpoint = start + (end - start) / 2
    baseline = _latest_phq9(
        facts,
        start - dt.timedelta(days=t.baseline_days_before_start),
        start + dt.timedelta(days=t.baseline_days_after_start),
    )
    follow_up = _latest_phq9(facts, midpoint, min(end + dt.timedelta(days=t.followup_days_after_end), as_of))
    if follow_up is not None and baseline is not None and follow_up.reference == baseline.reference:
        follow_up = None  # a short course: one score cannot be both ends of the trial
    if facts.lacks(DataDomain.PHQ9):
        return Outcome.UNKNOWN, baseline, follow_up, ("PHQ-9 scores could not be fetched",)
    if baseline is None or follow_up is None:
        return Outcome.UNKNOWN, baseline, follow_up, ()
    if follow_up.value <= t.response_max_fraction * baseline.value or follow_up.value < t.remission_below:
        return Outcome.RESPONSE, baseline, follow_up, ()
    return Outcome.NO_RESPONSE, baseline, follow_up, ()


def assess_trial(course: Course, facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> TrialAssessment:
    floor = policy.dose_floors_mg.get(course.ingredient)
    doses = [s.daily_mg for s in course.segments if s.daily_mg is not None]
    exposure = _adequacy(course, floor, policy, as_of)
    outcome, baseline, follow_up, outcome_notes = _outcome(course, facts, policy, as_of)
    notes = [*exposure.notes, *outcome_notes]
    start, end = course.start, course.end(as_of)
    missed = [n for n in facts.nonadherence if n.ingredient == course.ingredient and start <= n.day <= end]
    adequacy = exposure.adequacy
    if missed and adequacy is Adequacy.ADEQUATE:
        # Prescribed at an adequate dose for long enough, but not taken as prescribed: whether the patient had an
        # adequate trial is unknown until adherence is confirmed (issue #20). An inadequate prescription stays
        # inadequate: taking less of it cannot make it adequate.
        adequacy = Adequacy.UNKNOWN
    notes += [f"non-adherence recorded on {n.day.isoformat()}: {n.description}" for n in missed]
    if any(s.dose_source is DoseSource.NONE for s in course.segments) and doses:
        notes.append("some records carry no usable dose")
    if any(s.frequency_assumed for s in course.segments):
        notes.append("a dose without any frequency was read as once daily")
    return TrialAssessment(
        ingredient=course.ingredient,
        drug_class=course.drug_class,
        match_method=course.match_method,
        start=start,
        end=end,
        ongoing=course.ongoing,
        max_daily_dose_mg=max(doses) if doses else None,
        dose_floor_mg=floor,
        weeks_total=round(exposure.total_days / 7, 1),
        weeks_at_adequate_dose=round(exposure.adequate_days / 7, 1),
        adequacy=adequacy,
        baseline=baseline,
        follow_up=follow_up,
        outcome=outcome,
        evidence=course.evidence,
        notes=tuple(notes),
        duration_unknown=exposure.duration_unknown,
        nonadherence=tuple(dict.fromkeys(n.evidence for n in missed)),
    )


def _without_response(n: int) -> str:
    """'no adequate antidepressant trial without response', '1 adequate … trial …', '3 adequate … trials …'."""
    if n == 0:
        return "no adequate antidepressant trial without response"
    return f"{n} adequate antidepressant {'trial' if n == 1 else 'trials'} without response"


def assess_treatment_resistance(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> TreatmentResistance:
    window_start = months_before(as_of, policy.thresholds.trial_lookback_months)
    trials = tuple(
        assess_trial(c, facts, policy, as_of)
        for c in facts.courses
        if c.start <= as_of and c.end(as_of) >= window_start
    )
    failed = {t.ingredient for t in trials if t.adequacy is Adequacy.ADEQUATE and t.outcome is Outcome.NO_RESPONSE}
    if facts.lacks(DataDomain.MEDICATIONS):
        status, why = Criterion.UNKNOWN, _medications_unread(facts, failed)
    else:
        status, why = _resistance(trials, failed, policy.thresholds.min_failed_trials)
    return TreatmentResistance(status, len(failed), trials, why)


def _medications_unread(facts: ClinicalFacts, failed: set[str]) -> str:
    """Why treatment resistance is unknown when the medication history is incomplete."""
    unreadable = [g for g in facts.gaps if DataDomain.MEDICATIONS in g.domains]
    if unreadable and all(g.reason is GapReason.UNRESOLVED_REFERENCE for g in unreadable):
        # The clinical reason, not the bookkeeping: the unread order may be the latest trial, and it may have
        # responded (issue #18, item 7).
        return (f"{_without_response(len(failed))} on record, but an antidepressant order whose drug could not "
                "be read may be a more recent trial")
    return "medication history could not be fetched"


def _resistance(trials: tuple[TrialAssessment, ...], failed: set[str], needed: int) -> tuple[Criterion, str]:
    """Treatment resistance from a complete medication history: the most recent adequate trial's response
    outweighs any count of failed ones."""
    adequate = [t for t in trials if t.adequacy is Adequacy.ADEQUATE]
    latest = max(adequate, key=lambda t: (t.end, t.start), default=None)
    if latest is not None and latest.outcome is Outcome.RESPONSE:
        return Criterion.NOT_MET, f"the most recent adequate trial ({latest.ingredient}) responded"
    if len(failed) >= needed:
        return Criterion.MET, f"{len(failed)} antidepressants failed after adequate trials: {', '.join(sorted(failed))}"
    possible = failed | {
        t.ingredient
        for t in trials
        if t.outcome is not Outcome.RESPONSE and t.adequacy is not Adequacy.INADEQUATE
    }
    if len(possible) < needed:
        undocumented = len(possible) - len(failed)
        return Criterion.NOT_MET, f"{_without_response(len(failed))} on record; {needed} are needed" + (
            f", and even the {undocumented} whose response is not documented would bring it to only {len(possible)}"
            if undocumented else "")
    more = len(possible) - len(failed)
    return Criterion.UNKNOWN, (f"{_without_response(len(failed))} on record; {more} more "
                               f"{'trial counts' if more == 1 else 'trials count'} once "
                               f"{'its' if more == 1 else 'their'} dose or PHQ-9 response is documented")

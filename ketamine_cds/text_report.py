"""A clear plain-text summary of an assessment, for ``evaluate --format text``."""

from __future__ import annotations

from eligibility import (
    Adequacy,
    Assessment,
    Criterion,
    Mode,
    Outcome,
    Presence,
    TrialAssessment,
    Verdict,
    contraindication_label,
    course_summary,
    gap_sentences,
)
from fhir_mapping import ClinicalFacts

_VERDICT_WORDS = {
    Verdict.CANDIDATE: "CANDIDATE: criteria met, no contraindication documented",
    Verdict.NEEDS_WORKUP: "NEEDS WORK-UP: information is missing before a decision",
    Verdict.NOT_INDICATED: "NOT INDICATED",
    Verdict.CONTRAINDICATED: "CONTRAINDICATED",
    Verdict.CONTINUE: "CONTINUE the course: no contraindication, benefit shown or induction under way",
    Verdict.REASSESS: "REASSESS: induction has ended without a response; evaluate the benefit before continuing",
}
_MARK = {Presence.PRESENT: "[!]", Presence.ABSENT: "[ ]", Presence.UNKNOWN: "[?]"}
# The report is read by clinicians: words, never the enums' wire values ("not_met", "no_response").
_CRITERION = {Criterion.MET: "met", Criterion.NOT_MET: "not met", Criterion.UNKNOWN: "unknown"}
_PRESENCE = {Presence.PRESENT: "present", Presence.ABSENT: "not on record", Presence.UNKNOWN: "unknown"}
_ADEQUACY = {Adequacy.ADEQUATE: "adequate", Adequacy.INADEQUATE: "not adequate",
             Adequacy.UNKNOWN: "adequacy unknown"}
_OUTCOME = {Outcome.RESPONSE: "responded", Outcome.NO_RESPONSE: "no response", Outcome.UNKNOWN: "response unknown"}


def render_text(a: Assessment, facts: ClinicalFacts) -> str:
    sections = (_header(a, facts), _verdict(a), _findings(a), _contraindications(a), *_lists(a))
    return "\n".join(line for section in sections for line in section)


def _header(a: Assessment, facts: ClinicalFacts) -> list[str]:
    who = a.patient
    if facts.patient is not None and facts.patient.name:
        who = f"{facts.patient.name} ({a.patient})"
    return [f"{who} — as of {a.as_of.isoformat()} — policy {a.policy}", ""]


def _verdict(a: Assessment) -> list[str]:
    lines = []
    if a.course is not None:
        lines.append(f"Course: {course_summary(a.course)}"
                     + ("" if a.course.current else " — ended; this order is judged as a new start"))
    lines.append(f"Verdict: {_VERDICT_WORDS[a.verdict]}")
    lines.extend(f"  - {r.text}" for r in a.reasons)
    return [*lines, ""]


def _findings(a: Assessment) -> list[str]:
    tr = a.treatment_resistance
    return [f"Depression: {_PRESENCE[a.depression.status]}"
            + (f" ({', '.join(e.description for e in a.depression.evidence)})" if a.depression.evidence else ""),
            f"Treatment resistance: {_CRITERION[tr.status]} — {tr.explanation}",
            *(_trial(t) for t in tr.trials),
            f"Severity: {_CRITERION[a.severity.status]} — {a.severity.explanation}",
            ""]


def _trial(t: TrialAssessment) -> str:
    dose = f"{t.max_daily_dose_mg:g} mg/day" if t.max_daily_dose_mg is not None else "dose unknown"
    floor = f" (floor {t.dose_floor_mg:g})" if t.dose_floor_mg is not None else ""
    phq = ""
    if t.baseline or t.follow_up:
        b = f"{t.baseline.value:g}" if t.baseline else "?"
        fu = f"{t.follow_up.value:g}" if t.follow_up else "?"
        phq = f", PHQ-9 {b} → {fu}"
    return (f"  • {t.ingredient}: {t.start.isoformat()} to {t.end.isoformat()}, {dose}{floor}, "
            f"{t.weeks_at_adequate_dose:g} wk adequate — {_ADEQUACY[t.adequacy]}, {_OUTCOME[t.outcome]}{phq}")


def _contraindications(a: Assessment) -> list[str]:
    lines = ["Contraindications:"]
    for cid, f in a.contraindications.items():
        mode = "" if f.mode is Mode.EXCLUDE else " (caution)"
        status = "" if f.status is Presence.ABSENT else f": {_PRESENCE[f.status]}"  # the mark says it; the why follows
        lines.append(f"  {_MARK[f.status]} {contraindication_label(cid)}{mode}{status} — {f.explanation}")
        lines.extend(f"        {e.reference}{f' {e.day.isoformat()}' if e.day else ''}: {e.description}"
                     for e in f.evidence)
    return lines


def _lists(a: Assessment) -> list[list[str]]:
    """The warnings, work-up, data gaps and skipped entries: each a section when there are any."""
    skipped = len(a.skipped_entries)
    sections = [
        ("Warnings:", bool(a.warnings), [w.text for w in a.warnings]),
        ("Work-up:", bool(a.workup), [f"{w.text}{'' if w.required else ' (suggested)'}" for w in a.workup]),
        ("Data gaps (treated as unknown, never as absent):", bool(a.data_gaps), list(gap_sentences(a.gaps))),
        (f"Skipped {skipped} invalid entr{'y' if skipped == 1 else 'ies'}:", bool(skipped),
         list(a.skipped_entries[:10])),
    ]
    return [["", title, *(f"  - {item}" for item in items)] for title, shown, items in sections if shown]

"""A clear plain-text summary of an assessment, for ``evaluate --format text``."""

from __future__ import annotations

from eligibility import (
    Adequacy,
    Assessment,
    Criterion,
    Outcome,
    Presence,
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
    lines: list[str] = []
    who = a.patient
    if facts.patient is not None and facts.patient.name:
        who = f"{facts.patient.name} ({a.patient})"
    lines.append(f"{who} — as of {a.as_of.isoformat()} — policy {a.policy}")
    lines.append("")
    if a.course is not None:
        lines.append(f"Course: {course_summary(a.course)}"
                     + ("" if a.course.current else " — ended; this order is judged as a new start"))
    lines.append(f"Verdict: {_VERDICT_WORDS[a.verdict]}")
    for r in a.reasons:
        lines.append(f"  - {r.text}")
    lines.append("")
    lines.append(f"Depression: {_PRESENCE[a.depression.status]}"
                 + (f" ({', '.join(e.description for e in a.depression.evidence)})" if a.depression.evidence else ""))
    tr = a.treatment_resistance
    lines.append(f"Treatment resistance: {_CRITERION[tr.status]} — {tr.explanation}")
    for t in tr.trials:
        dose = f"{t.max_daily_dose_mg:g} mg/day" if t.max_daily_dose_mg is not None else "dose unknown"
        floor = f" (floor {t.dose_floor_mg:g})" if t.dose_floor_mg is not None else ""
        phq = ""
        if t.baseline or t.follow_up:
            b = f"{t.baseline.value:g}" if t.baseline else "?"
            fu = f"{t.follow_up.value:g}" if t.follow_up else "?"
            phq = f", PHQ-9 {b} → {fu}"
        lines.append(f"  • {t.ingredient}: {t.start.isoformat()} to {t.end.isoformat()}, {dose}{floor}, "
                     f"{t.weeks_at_adequate_dose:g} wk adequate — {_ADEQUACY[t.adequacy]}, {_OUTCOME[t.outcome]}{phq}")
    lines.append(f"Severity: {_CRITERION[a.severity.status]} — {a.severity.explanation}")
    lines.append("")
    lines.append("Contraindications:")
    for cid, f in a.contraindications.items():
        mode = "" if f.mode == "exclude" else " (caution)"
        status = "" if f.status is Presence.ABSENT else f": {_PRESENCE[f.status]}"  # the mark says it; the why follows
        lines.append(f"  {_MARK[f.status]} {contraindication_label(cid)}{mode}{status} — {f.explanation}")
        for e in f.evidence:
            when = f" {e.day.isoformat()}" if e.day else ""
            lines.append(f"        {e.reference}{when}: {e.description}")
    if a.warnings:
        lines.append("")
        lines.append("Warnings:")
        lines.extend(f"  - {w.text}" for w in a.warnings)
    if a.workup:
        lines.append("")
        lines.append("Work-up:")
        lines.extend(f"  - {w.text}{'' if w.required else ' (suggested)'}" for w in a.workup)
    if a.data_gaps:
        lines.append("")
        lines.append("Data gaps (treated as unknown, never as absent):")
        lines.extend(f"  - {g}" for g in gap_sentences(a.gaps))
    if a.skipped_entries:
        lines.append("")
        lines.append(f"Skipped {len(a.skipped_entries)} invalid entr{'y' if len(a.skipped_entries) == 1 else 'ies'}:")
        lines.extend(f"  - {s}" for s in a.skipped_entries[:10])
    return "\n".join(lines)

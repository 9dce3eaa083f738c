"""What the review page says, decided here rather than in the template: the decisive findings, the checklist's
words and order, each piece of evidence in full, the references, and dates relative to the assessment.

Everything comes from the assessment and the facts the app already loaded: evidence opens in place, never as a raw
FHIR URL (which would open a 401 JSON page inside the EHR's frame and strand the user).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from eligibility import (
    LABEL_CONTRAINDICATIONS,
    Assessment,
    ContraindicationFinding,
    ContraindicationId,
    Evidence,
    Mode,
    Policy,
    Presence,
    ReasonKind,
    Source,
    Verdict,
    WorkupKind,
    contraindication_label,
    course_summary,
)
from fhir_mapping import ClinicalFacts, DoseSource, ObservationKind, ScoreFact

_SCORE_NAMES = {ObservationKind.PHQ9_TOTAL: "PHQ-9 total", ObservationKind.PHQ9_ITEM9: "PHQ-9 item 9",
                ObservationKind.GAD7_TOTAL: "GAD-7 total"}
_DOSE_SOURCES = {DoseSource.STRUCTURED: "structured dose", DoseSource.STRUCTURED_UNITS_X_STRENGTH:
                 "units times strength", DoseSource.TEXT: "read from the sig text", DoseSource.NONE: "no dose recorded"}
_STATUS_ORDER = {Presence.PRESENT: 0, Presence.UNKNOWN: 1, Presence.ABSENT: 2}


#: Severity bands: PHQ-9 5/10/15/20 (Kroenke 2001, PMID 11556941); GAD-7 5/10/15 (Spitzer 2006, PMID 16717171).
_BANDS = {
    ObservationKind.PHQ9_TOTAL: ((20, "severe"), (15, "moderately severe"), (10, "moderate"), (5, "mild"),
                                 (0, "minimal")),
    ObservationKind.GAD7_TOTAL: ((15, "severe"), (10, "moderate"), (5, "mild"), (0, "minimal")),
}


def band(score: ScoreFact) -> str:
    """The published severity band of a PHQ-9 or GAD-7 total ('-' for other scores)."""
    for low, name in _BANDS.get(score.kind, ()):
        if score.value >= low:
            return name
    return "-"


def ago(day: dt.date, as_of: dt.date) -> str:
    """'today', '20 days ago', '3 months ago', '2 years ago' — beside the absolute date, never instead of it."""
    days = (as_of - day).days
    if days < 0:
        return "in the future"
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 60:
        return f"{days} days ago"
    if days < 730:
        return f"{round(days / 30.44)} months ago"
    return f"{days // 365} years ago"


@dataclass(frozen=True, slots=True)
class Finding:
    """One decisive finding of the verdict: what, on what basis, and the record it rests on."""

    title: str
    basis: str
    evidence: Evidence | None = None


def rule_basis(cid: ContraindicationId, mode: Mode) -> str:
    """Whose rule it is: the label's contraindication, or this clinic policy's exclusion (or caution)."""
    if cid in LABEL_CONTRAINDICATIONS:
        return "contraindication in the esketamine label"
    return "exclusion of this clinic policy" if mode is Mode.EXCLUDE else "caution under this clinic policy"


def decisive_findings(a: Assessment, policy: Policy) -> list[Finding]:
    """The finding(s) that decide the verdict, first thing in the verdict box."""
    if a.verdict is Verdict.CONTRAINDICATED:
        return [Finding(contraindication_label(cid).capitalize(), rule_basis(cid, f.mode),
                        f.evidence[0] if f.evidence else None)
                for cid, f in a.contraindications.items()
                if f.status is Presence.PRESENT and policy.contraindications[cid].mode is Mode.EXCLUDE]
    if a.verdict is Verdict.CANDIDATE:
        tr, phq = a.treatment_resistance, a.severity.phq9
        found = [Finding(f"{tr.failed_adequate_trials} failed adequate antidepressant trials",
                         f"at least {policy.thresholds.min_failed_trials} required")]
        if phq is not None:
            # How the score was read ("computed from the nine items") is part of the finding a clinician weighs.
            note = f" ({phq.note})" if phq.note else ""
            found.append(Finding(f"PHQ-9 {phq.value:g}{note}", f"at or above {policy.thresholds.severity_phq9_min:g}",
                                 Evidence(phq.reference, f"PHQ-9 total {phq.value:g}", phq.day)))
        return found
    if a.verdict in (Verdict.CONTINUE, Verdict.REASSESS) and a.course is not None:
        course, latest = a.course, a.course.latest_phq9
        basis = ("benefit at the end of induction: evaluate before continuing" if a.verdict is Verdict.REASSESS
                 else "induction under way" if course.response.value == "not_yet_due" else "benefit shown")
        return [Finding(course_summary(course), basis,
                        Evidence(latest.reference, f"PHQ-9 total {latest.value:g}", latest.day) if latest else None)]
    wanted = ReasonKind.UNKNOWN if a.verdict is Verdict.NEEDS_WORKUP else None
    return [Finding(r.text, _basis_of(r.kind, policy)) for r in a.reasons if wanted is None or r.kind is wanted]


def _basis_of(kind: ReasonKind, policy: Policy) -> str:
    """What a reason against treating rests on, as a clinician says it (never "criterion not met")."""
    t = policy.thresholds
    return {ReasonKind.UNKNOWN: "information missing",
            ReasonKind.ANXIETY_WITHOUT_DEPRESSION: "the indication is treatment-resistant major depression",
            ReasonKind.DEPRESSION_ABSENT: "the indication is major depression",
            ReasonKind.TREATMENT_RESISTANCE_NOT_MET: f"at least {t.min_failed_trials} are needed",
            ReasonKind.SEVERITY_NOT_MET: f"PHQ-9 of at least {t.severity_phq9_min:g} needed",
            }.get(kind, "not met under this policy")


@dataclass(frozen=True, slots=True)
class ChecklistRow:
    id: ContraindicationId
    label: str
    finding: ContraindicationFinding
    status_word: str
    status_class: str
    basis: str


def checklist(a: Assessment, policy: Policy) -> list[ChecklistRow]:
    """Present first, then unknown, then none on record. "None on record" is what we know — never a green
    "absent": a diagnosis the chart does not hold may still be true."""
    pregnancy_test_suggested = any(w.kind is WorkupKind.PREGNANCY_TEST for w in a.workup)
    rows = []
    for cid, f in a.contraindications.items():
        if f.status is Presence.PRESENT:
            word, css = "present", "present"
        elif f.status is Presence.UNKNOWN:
            word, css = "unknown", "unknown"
        elif cid is ContraindicationId.PREGNANCY and pregnancy_test_suggested:
            word, css = "none on record — test suggested", "none"
        else:
            word, css = "none on record", "none"
        rows.append(ChecklistRow(cid, contraindication_label(cid).capitalize(), f, word, css,
                                 rule_basis(cid, policy.contraindications[cid].mode)))
    return sorted(rows, key=lambda r: _STATUS_ORDER[r.finding.status])


@dataclass(frozen=True, slots=True)
class EvidenceDetail:
    """A record as the app read it: what it says, when, its status in the source system."""

    what: str
    when: dt.date | None
    status: str


def evidence_details(facts: ClinicalFacts) -> dict[str, EvidenceDetail]:
    """Every record behind the facts, by its reference (``Condition/123``)."""
    found: dict[str, EvidenceDetail] = {}
    for c in facts.conditions:
        found[c.reference] = EvidenceDetail(f"{c.display} ({c.system} {c.code})", c.onset or c.recorded,
                                            f"{c.clinical_status}, {c.verification_status or 'verification not given'}")
    for p in facts.free_text_problems:
        found[p.reference] = EvidenceDetail(f"free-text problem: “{p.text}”", p.day, "not coded — confirm")
    for s in facts.scores:
        found[s.reference] = EvidenceDetail(f"{_SCORE_NAMES.get(s.kind, s.kind.value)}: {s.value:g}", s.day,
                                            "recorded score")
    for b in facts.blood_pressures:
        reading = f"{_num(b.systolic)}/{_num(b.diastolic)} mmHg"
        more = f" (lowest of {b.readings} readings that day)" if b.readings > 1 else ""
        found[b.reference] = EvidenceDetail(f"blood pressure {reading}{more}", b.day, "recorded vital sign")
    for r in facts.lab_results:
        result = "positive" if r.positive else "negative"
        found[r.reference] = EvidenceDetail(f"{r.analyte}: {result} (LOINC {r.code})", r.day,
                                            "interpreted" if r.interpretable else "no interpretation or range")
    for al in facts.allergies:
        found[al.reference] = EvidenceDetail(f"allergy or intolerance: {al.substance}", None,
                                             f"{al.clinical_status}, {al.verification_status or 'unverified'}")
    for course in facts.courses:
        for seg in course.segments:
            dose = "dose unknown" if seg.daily_mg is None else f"{seg.daily_mg:g} mg/day"
            until = seg.end.isoformat() if seg.end else "ongoing"
            found.setdefault(seg.evidence, EvidenceDetail(
                f"{course.ingredient}, {dose}", seg.start,
                f"{seg.start} to {until}; {_DOSE_SOURCES.get(seg.dose_source, seg.dose_source.value)}"))
    for m in facts.other_medications:
        found.setdefault(m.evidence, EvidenceDetail(m.name, m.start, m.status))
    return found


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def references(policy: Policy) -> list[Source]:
    """The primary sources the policy's rules cite, numbered in the order the page first uses them (a secondary
    summary or a local choice is named in words beside its rule, never listed as a reference)."""
    seen: dict[str, Source] = {}
    citations = [rule.citation for rule in policy.contraindications.values()]
    citations += [*policy.citations.values(), policy.dose_floor_citation]
    for citation in citations:
        for source in citation.sources:
            if source.primary:
                seen.setdefault(source.id, source)
    return list(seen.values())

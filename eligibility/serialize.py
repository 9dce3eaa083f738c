"""The assessment as JSON: the stable interface of ``ketamine-cds evaluate`` that scripts and the other faces use."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .course import TreatmentCourse
from .model import Assessment, Evidence, Score, TrialAssessment


def _day(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def _evidence(e: Evidence) -> dict[str, Any]:
    return {"reference": e.reference, "description": e.description, "date": _day(e.day)}


def _score(s: Score | None) -> dict[str, Any] | None:
    if s is None:
        return None
    found: dict[str, Any] = {"value": s.value, "date": s.day.isoformat(), "reference": s.reference}
    if s.note:
        # Only a score not simply as recorded carries a note (issue #20): every other answer stays as it was.
        found["note"] = s.note
    return found


def _trial(t: TrialAssessment) -> dict[str, Any]:
    return {
        "ingredient": t.ingredient,
        "drug_class": t.drug_class,
        "matched_by": t.match_method,
        "start": t.start.isoformat(),
        "end": t.end.isoformat(),
        "ongoing": t.ongoing,
        "daily_dose_mg": t.max_daily_dose_mg,
        "adequate_dose_floor_mg": t.dose_floor_mg,
        "weeks_total": t.weeks_total,
        "weeks_at_adequate_dose": t.weeks_at_adequate_dose,
        "adequacy": t.adequacy.value,
        "baseline_phq9": _score(t.baseline),
        "follow_up_phq9": _score(t.follow_up),
        "outcome": t.outcome.value,
        "evidence": list(t.evidence),
        "notes": list(t.notes),
    }


def _course(c: TreatmentCourse | None) -> dict[str, Any] | None:
    if c is None:
        return None
    reduction = c.reduction
    return {
        "current": c.current,
        "phase": c.phase.value if c.phase else None,
        "week": c.week,
        "product": c.product.value,
        "first_dose": c.first_dose.isoformat(),
        "last_dose": c.last_dose.isoformat(),
        "doses": c.doses,
        "induction_end": c.induction_end.isoformat(),
        "baseline_phq9": _score(c.baseline_phq9),
        "latest_phq9": _score(c.latest_phq9),
        "reduction": None if reduction is None else round(reduction, 3),
        "response": c.response.value,
        "dose_dates": [d.isoformat() for d in c.dose_days],
        "evidence": list(c.evidence),
    }


def assessment_to_json(a: Assessment) -> dict[str, Any]:
    tr = a.treatment_resistance
    return {
        "patient": a.patient,
        "as_of": a.as_of.isoformat(),
        "policy": a.policy,
        "verdict": a.verdict.value,
        "course": _course(a.course),
        "reasons": [{"code": r.code, "text": r.text} for r in a.reasons],
        "depression": {
            "status": a.depression.status.value,
            "evidence": [e.reference for e in a.depression.evidence],
            "details": [_evidence(e) for e in a.depression.evidence],
            "anxiety_evidence": [e.reference for e in a.depression.anxiety_evidence],
        },
        "treatment_resistance": {
            "status": tr.status.value,
            "failed_adequate_trials": tr.failed_adequate_trials,
            "explanation": tr.explanation,
            "trials": [_trial(t) for t in tr.trials],
        },
        "severity": {
            "status": a.severity.status.value,
            "threshold": a.severity.threshold,
            "phq9": _score(a.severity.phq9),
            "explanation": a.severity.explanation,
        },
        "contraindications": {
            cid.value: {
                "status": f.status.value,
                "mode": f.mode,
                "evidence": [e.reference for e in f.evidence],
                "details": [_evidence(e) for e in f.evidence],
                "explanation": f.explanation,
            }
            for cid, f in a.contraindications.items()
        },
        "workup": [{"kind": w.kind.value, "text": w.text, "required": w.required} for w in a.workup],
        "warnings": [
            {"id": w.code, "text": w.text, "evidence": [e.reference for e in w.evidence],
             "details": [_evidence(e) for e in w.evidence]} for w in a.warnings
        ],
        "data_gaps": list(a.data_gaps),
        "skipped_entries": list(a.skipped_entries),
    }

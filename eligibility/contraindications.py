"""The nine contraindications, each present / absent / unknown with its evidence.

Evidence found is always reported, even when other data is missing; a rule falls back to "unknown" only when the
data it needs could not be fetched (a gap) or, for blood pressure, when the measurement it requires is missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from fhir_mapping import (
    AllergyStatus,
    BloodPressureFact,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    DataDomain,
    GapReason,
    Gender,
    LabResultFact,
    ObservationKind,
)

from .model import ContraindicationFinding, ContraindicationId, Evidence, Presence
from .policy import Policy, Thresholds

_C = ContraindicationId
_ANY_HISTORY = {
    _C.PSYCHOSIS: "psychosis",
    _C.BIPOLAR: "bipolar",
    _C.ANEURYSM_OR_AVM: "aneurysm_or_avm",
    _C.INTRACEREBRAL_HEMORRHAGE: "intracerebral_hemorrhage",
}


def condition_evidence(c: ConditionFact) -> Evidence:
    status = c.clinical_status.value if c.clinical_status.value != "unspecified" else "no status"
    noted = f" — {c.note}" if c.note else ""
    return Evidence(c.reference, f"{c.display} ({c.system} {c.code}; {status}){noted}", c.onset or c.recorded)


def _noted(r: LabResultFact) -> str:
    return f" — {r.note}" if r.note else ""


def _finding(
    cid: ContraindicationId, policy: Policy, evidence: Iterable[Evidence], gap: bool, absent_why: str,
    present_why: str = "", unknown_why: str = "", to_confirm: Iterable[Evidence] = (),
) -> ContraindicationFinding:
    """Evidence found decides (present); else a gap or a record to confirm makes it unknown; else absent."""
    found = tuple(evidence)
    mode = policy.contraindications[cid].mode
    if found:
        return ContraindicationFinding(cid, Presence.PRESENT, mode, found, present_why or "documented")
    confirm = tuple(to_confirm)
    if confirm:
        return ContraindicationFinding(cid, Presence.UNKNOWN, mode, confirm,
                                       "; ".join(e.description for e in confirm))
    if gap:
        return ContraindicationFinding(cid, Presence.UNKNOWN, mode, (), unknown_why or "data could not be fetched")
    return ContraindicationFinding(cid, Presence.ABSENT, mode, (), absent_why)


def _unknown_why(facts: ClinicalFacts, *domains: DataDomain) -> str:
    """Why a rule's data is incomplete, in the words of a gap that is not a failed fetch (an entry that could not be
    read, a search that said it was incomplete: issue #20); else the usual words."""
    said = [g.detail for g in facts.gaps if g.reason in (GapReason.UNREADABLE, GapReason.INCOMPLETE)
            and any(d in g.domains for d in domains)]
    return "; ".join(dict.fromkeys(said)) or "data could not be fetched"


def _free_text(facts: ClinicalFacts, *concepts: str) -> list[Evidence]:
    """Problems named only in free text: a clinician must confirm them (issue #12)."""
    return [Evidence(p.reference, f"free-text problem '{p.text}' — confirm", p.day)
            for p in facts.free_text_problems if p.concept in concepts]


def _history(facts: ClinicalFacts, concept: str) -> list[Evidence]:
    return [condition_evidence(c) for c in facts.conditions if concept in c.concepts]


def _active(facts: ClinicalFacts, concept: str) -> list[ConditionFact]:
    return [c for c in facts.conditions if concept in c.concepts and c.clinical_status.is_active]


def _bp_above(b: BloodPressureFact, t: Thresholds) -> bool:
    s, d = b.systolic, b.diastolic
    return (s is not None and s > t.bp_systolic_above) or (d is not None and d > t.bp_diastolic_above)


def _bp_severe(b: BloodPressureFact, t: Thresholds) -> bool:
    s, d = b.systolic, b.diastolic
    return (s is not None and s >= t.bp_severe_systolic) or (d is not None and d >= t.bp_severe_diastolic)


def _bp_evidence(b: BloodPressureFact) -> Evidence:
    noted = f" — {b.note}" if b.note else ""
    return Evidence(b.reference, f"BP {_num(b.systolic)}/{_num(b.diastolic)} mmHg{noted}", b.day)


def _hypertension(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> ContraindicationFinding:
    t = policy.thresholds
    cid = _C.UNCONTROLLED_HYPERTENSION
    mode = policy.contraindications[cid].mode
    lo = as_of - dt.timedelta(days=t.bp_window_days)
    readings = [b for b in facts.blood_pressures if lo <= b.day <= as_of]
    incomplete = facts.lacks(DataDomain.BLOOD_PRESSURE)
    # A blood-pressure entry that could not be read (issue #20) says so, never "no reading" nor "not fetched".
    unreadable = "; ".join(g.detail for g in facts.gaps
                           if g.reason is GapReason.UNREADABLE and DataDomain.BLOOD_PRESSURE in g.domains)
    if not readings:
        why = ((unreadable or "blood pressure could not be fetched") if incomplete
               else f"no blood pressure reading in the last {t.bp_window_days} days")
        return ContraindicationFinding(cid, Presence.UNKNOWN, mode, (), why)
    latest = readings[-1]
    if _bp_severe(latest, t):
        return ContraindicationFinding(cid, Presence.PRESENT, mode, (_bp_evidence(latest),),
                                       f"latest reading at or above {_num(t.bp_severe_systolic)}/"
                                       f"{_num(t.bp_severe_diastolic)}")
    others = [b for b in readings[:-1] if _bp_above(b, t)]
    if incomplete and not (_bp_above(latest, t) and others):
        # Some readings arrived but the search did not complete: a later reading may be missing.
        return ContraindicationFinding(cid, Presence.UNKNOWN, mode, (_bp_evidence(latest),),
                                       f"{unreadable or 'the blood pressure search did not complete'}: recheck BP")
    return _below_severe(cid, policy, readings, others)


def _below_severe(cid: ContraindicationId, policy: Policy, readings: list[BloodPressureFact],
                  others: list[BloodPressureFact]) -> ContraindicationFinding:
    """The verdict on a latest reading below the severe threshold, from how many readings in the window are above
    the usual one (``others``: the elevated ones before the latest)."""
    t = policy.thresholds
    mode = policy.contraindications[cid].mode
    latest = readings[-1]
    if not _bp_above(latest, t):
        return ContraindicationFinding(cid, Presence.ABSENT, mode, (_bp_evidence(latest),),
                                       f"latest reading at or below {_num(t.bp_systolic_above)}/"
                                       f"{_num(t.bp_diastolic_above)}")
    if others:
        return ContraindicationFinding(cid, Presence.PRESENT, mode,
                                       (_bp_evidence(latest), *map(_bp_evidence, others[-3:])),
                                       f"latest and {len(others)} earlier "
                                       f"{'reading' if len(others) == 1 else 'readings'} above "
                                       f"{_num(t.bp_systolic_above)}/{_num(t.bp_diastolic_above)}")
    why = ("latest reading elevated and the only elevated reading in the window: recheck BP"
           if len(readings) > 1 else "a single elevated reading: recheck BP")
    return ContraindicationFinding(cid, Presence.UNKNOWN, mode, (_bp_evidence(latest),), why)


def _cardiovascular(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> ContraindicationFinding:
    cid = _C.CARDIOVASCULAR_DISEASE
    days = policy.thresholds.recent_mi_days
    recent = as_of - dt.timedelta(days=days)
    evidence = [condition_evidence(c) for c in _active(facts, "heart_failure")]
    evidence += [condition_evidence(c) for c in _active(facts, "unstable_angina")]
    undated: list[Evidence] = []
    for c in facts.conditions:
        if "myocardial_infarction" not in c.concepts:
            continue
        if c.onset is not None:
            if recent <= c.onset <= as_of:
                evidence.append(condition_evidence(c))
        elif c.clinical_status.is_active and (c.recorded is None or c.recorded >= recent):
            undated.append(condition_evidence(c))
    if not evidence and undated:
        mode = policy.contraindications[cid].mode
        return ContraindicationFinding(cid, Presence.UNKNOWN, mode, tuple(undated),
                                       f"myocardial infarction without an onset date: was it within {days} days?")
    return _finding(cid, policy, evidence, facts.lacks(DataDomain.CONDITIONS),
                    f"no heart failure, unstable angina or myocardial infarction within {days} days on record",
                    "active heart failure, unstable angina, or a recent myocardial infarction",
                    unknown_why=_unknown_why(facts, DataDomain.CONDITIONS),
                    to_confirm=_free_text(facts, "heart_failure", "myocardial_infarction", "unstable_angina"))


def _substance_use(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> ContraindicationFinding:
    days = policy.thresholds.drug_screen_window_days
    lo = as_of - dt.timedelta(days=days)
    evidence = [condition_evidence(c) for c in _active(facts, "substance_use")]
    evidence += [
        Evidence(r.reference, f"positive {r.analyte} screen (LOINC {r.code}){_noted(r)}", r.day)
        for r in facts.lab_results
        if r.kind is ObservationKind.DRUG_SCREEN and r.positive and r.interpretable and lo <= r.day <= as_of
    ]
    # A substance-use status recording current misuse in the same window (US Core's, SNOMED CT 228366006; issue
    # #20): the latest status decides, so a later one recording none supersedes an earlier misuse.
    statuses = [r for r in facts.lab_results
                if r.kind is ObservationKind.SUBSTANCE_USE_STATUS and r.interpretable and lo <= r.day <= as_of]
    if statuses and statuses[-1].positive:
        r = statuses[-1]
        evidence.append(Evidence(r.reference, f"substance use status: current misuse of {r.analyte} (SNOMED CT "
                                              f"{r.code}){_noted(r)}", r.day))
    gap = facts.lacks(DataDomain.CONDITIONS, DataDomain.DRUG_SCREENS)
    return _finding(_C.SUBSTANCE_USE, policy, evidence, gap,
                    f"no active substance use disorder and no positive drug screen in {days} days on record",
                    unknown_why=_unknown_why(facts, DataDomain.CONDITIONS, DataDomain.DRUG_SCREENS),
                    to_confirm=_free_text(facts, "substance_use"))


def _pregnancy_conditions(facts: ClinicalFacts, lookback: dt.date, as_of: dt.date) -> list[Evidence]:
    evidence: list[Evidence] = []
    for c in facts.conditions:
        if "pregnancy" not in c.concepts or not c.clinical_status.is_active:
            continue
        if c.clinical_status is ClinicalStatus.UNSPECIFIED:
            # No clinicalStatus: a pregnancy counts only while it can still be going on.
            day = c.onset or c.recorded
            if day is None or not lookback <= day <= as_of:
                continue
        evidence.append(condition_evidence(c))
    return evidence


def _pregnant_status(facts: ClinicalFacts, readable: list[LabResultFact], lookback: dt.date,
                     as_of: dt.date) -> Evidence | None:
    """The latest pregnancy status in the look-back when it says pregnant and no negative test (of ``readable``)
    came after it."""
    statuses = [r for r in facts.lab_results if r.kind is ObservationKind.PREGNANCY_STATUS
                and lookback <= r.day <= as_of]
    if statuses and statuses[-1].positive:
        status = statuses[-1]
        later_negative = [r for r in readable if r.day > status.day and not r.positive]
        if not later_negative:
            return Evidence(status.reference, "pregnancy status: pregnant (LOINC 82810-3)", status.day)
    return None


def _pregnancy(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> ContraindicationFinding:
    """A positive test in the window, a pregnancy status saying pregnant, or an active pregnancy condition.

    Gender unknown or other, or no Patient at all: the rule applies as for a non-male patient (issue #12).
    """
    cid = _C.PREGNANCY
    if facts.patient is not None and facts.patient.gender is Gender.MALE:
        return _finding(cid, policy, (), False, "male patient")
    t = policy.thresholds
    lo = as_of - dt.timedelta(days=t.pregnancy_test_window_days)
    lookback = as_of - dt.timedelta(days=t.pregnancy_lookback_days)
    evidence = _pregnancy_conditions(facts, lookback, as_of)
    tests = [r for r in facts.lab_results if r.kind is ObservationKind.PREGNANCY_TEST and lo <= r.day <= as_of]
    readable = [r for r in tests if r.interpretable]
    if readable and readable[-1].positive:
        r = readable[-1]
        evidence.append(Evidence(r.reference, f"positive pregnancy test (LOINC {r.code})", r.day))
    status = _pregnant_status(facts, readable, lookback, as_of)
    if status is not None:
        evidence.append(status)
    unreadable = [Evidence(r.reference, f"pregnancy test (LOINC {r.code}) without interpretation or reference "
                                        "range — review", r.day) for r in tests if not r.interpretable]
    gap = facts.lacks(DataDomain.CONDITIONS, DataDomain.PREGNANCY, DataDomain.PATIENT)
    absent = (f"negative pregnancy test on {readable[-1].day.isoformat()}" if readable
              else "none on record")
    return _finding(cid, policy, evidence, gap, absent,
                    to_confirm=[*_free_text(facts, "pregnancy"), *([] if readable else unreadable)])


def _hypersensitivity(facts: ClinicalFacts, policy: Policy) -> ContraindicationFinding:
    evidence = [
        Evidence(a.reference, f"allergy/intolerance: {a.substance} ({a.clinical_status})")
        for a in facts.allergies
        if a.clinical_status is AllergyStatus.ACTIVE
    ]
    return _finding(_C.KETAMINE_HYPERSENSITIVITY, policy, evidence,
                    facts.lacks(DataDomain.ALLERGIES),
                    "no ketamine or esketamine allergy documented")


def assess_contraindications(
    facts: ClinicalFacts, policy: Policy, as_of: dt.date
) -> dict[ContraindicationId, ContraindicationFinding]:
    condition_gap = facts.lacks(DataDomain.CONDITIONS)

    def history_rule(cid: ContraindicationId, concept: str) -> Callable[[], ContraindicationFinding]:
        confirm = _free_text(facts, concept)
        if cid is _C.ANEURYSM_OR_AVM:
            # Subarachnoid hemorrhage is usually aneurysmal: review before ruling an aneurysm out (issue #12).
            confirm += [Evidence(e.reference, f"review: subarachnoid hemorrhage — {e.description}", e.day)
                        for e in _history(facts, "subarachnoid_hemorrhage")]
            confirm += _free_text(facts, "subarachnoid_hemorrhage")
        return lambda: _finding(cid, policy, _history(facts, concept), condition_gap,
                                "none on record (any history searched)", "on record (any history counts)",
                                unknown_why=_unknown_why(facts, DataDomain.CONDITIONS), to_confirm=confirm)

    rules = {cid: history_rule(cid, concept) for cid, concept in _ANY_HISTORY.items()}
    rules[_C.UNCONTROLLED_HYPERTENSION] = lambda: _hypertension(facts, policy, as_of)
    rules[_C.CARDIOVASCULAR_DISEASE] = lambda: _cardiovascular(facts, policy, as_of)
    rules[_C.SUBSTANCE_USE] = lambda: _substance_use(facts, policy, as_of)
    rules[_C.PREGNANCY] = lambda: _pregnancy(facts, policy, as_of)
    rules[_C.KETAMINE_HYPERSENSITIVITY] = lambda: _hypersensitivity(facts, policy)
    return {cid: rules[cid]() for cid in ContraindicationId}


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"

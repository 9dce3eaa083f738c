"""One patient's resources → :class:`ClinicalFacts`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets, system_key
from .dates import effective_day, parse_day
from .facts import (
    AllergyFact,
    BloodPressureFact,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    Gender,
    LabResultFact,
    ObservationKind,
    PatientFact,
    ResourceType,
    ScoreFact,
    SkippedEntry,
)
from .loading import InputError, ResourcePool
from .medications import DEFAULT_MERGE_GAP_DAYS, map_medications

_FINAL_OBSERVATION = {"final", "amended", "corrected"}
_IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
_POSITIVE_INTERPRETATION = {"POS", "A", "AA", "H", "HH", "HU", "DET"}
_POSITIVE_TEXT = re.compile(r"^\s*(positive|detected|reactive|present)\b", re.I)
_SCORE_RANGES = {
    ObservationKind.PHQ9_TOTAL: (0, 27),
    ObservationKind.PHQ9_ITEM9: (0, 3),
    ObservationKind.GAD7_TOTAL: (0, 21),
}
_DRUG_SCREENS = {
    "drug_screen_cocaine": "cocaine",
    "drug_screen_amphetamines": "amphetamines",
    "drug_screen_pcp": "phencyclidine",
    "drug_screen_ketamine": "ketamine",
}


def patients_in(pool: ResourcePool) -> list[str]:
    """The ids of the patients the input is about: its Patient resources, else the subjects referenced."""
    ids = [r["id"] for r in pool.of_type(ResourceType.PATIENT)]
    if ids:
        return ids
    subjects = {_subject_id(r) for r in pool.resources if r["resourceType"] != ResourceType.MEDICATION}
    return sorted(s for s in subjects if s)


def _subject_id(resource: dict[str, Any]) -> str | None:
    ref = text(obj(resource, "subject") or obj(resource, "patient"), "reference")
    if not ref:
        return None
    tail = ref.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] == "Patient":
        return tail[-1]
    return ref.rsplit(":", 1)[-1]  # urn:uuid:…


def to_facts(
    pool: ResourcePool,
    patient_id: str | None = None,
    codesets: CodeSets | None = None,
    merge_gap_days: int = DEFAULT_MERGE_GAP_DAYS,
    observations_since: dt.date | None = None,
) -> ClinicalFacts:
    """Normalise one patient's resources. With several patients in the pool, ``patient_id`` is required.

    ``observations_since`` leaves out (unvalidated) Observations older than the earliest day any rule reads;
    conditions are never cut by date, since "any history" counts for several contraindications.
    """
    codesets = codesets or CodeSets.load()
    candidates = patients_in(pool)
    if patient_id is None:
        if len(candidates) > 1:
            raise InputError(f"the input holds {len(candidates)} patients; choose one with --patient")
        patient_id = candidates[0] if candidates else None
    elif candidates and patient_id not in candidates:
        raise InputError(f"patient {patient_id!r} is not in the input")

    def mine(rtype: ResourceType) -> list[dict[str, Any]]:
        return [r for r in pool.of_type(rtype) if patient_id is None or _subject_id(r) == patient_id]

    patient = next((r for r in pool.of_type(ResourceType.PATIENT) if r["id"] == patient_id), None)
    observation_issues: list[SkippedEntry] = []
    meds = map_medications(
        pool,
        codesets,
        mine(ResourceType.MEDICATION_STATEMENT) + mine(ResourceType.MEDICATION_REQUEST),
        merge_gap_days,
    )
    scores, pressures, labs = _observations(codesets, pool, mine(ResourceType.OBSERVATION), observation_issues,
                                            observations_since)
    conditions = tuple(_conditions(codesets, pool, mine(ResourceType.CONDITION)))
    allergies = tuple(_allergies(codesets, pool, mine(ResourceType.ALLERGY_INTOLERANCE)))
    patient_fact = _patient(patient) if patient and pool.valid(patient) else None
    return ClinicalFacts(
        patient=patient_fact,
        conditions=conditions,
        courses=meds.courses,
        other_medications=meds.other,
        scores=tuple(sorted(scores, key=lambda s: s.day)),
        blood_pressures=tuple(sorted(pressures, key=lambda b: b.day)),
        lab_results=tuple(sorted(labs, key=lambda r: r.day)),
        allergies=allergies,
        gaps=tuple(pool.gaps),
        # Everything validated above has been reported by now: load problems, invalid entries, odd values.
        skipped=(*pool.skipped, *observation_issues),
        unmatched_medications=meds.unmatched,
        patient_id=patient_id,
    )


def _patient(res: dict[str, Any]) -> PatientFact:
    try:
        gender = Gender(res.get("gender") or "unknown")
    except ValueError:
        gender = Gender.UNKNOWN
    name = ""
    for n in res.get("name") or []:
        name = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")]).strip()
        if name:
            break
    return PatientFact(id=res["id"], gender=gender, birth_date=parse_day(res.get("birthDate")), name=name)


def _status_code(concept: dict[str, Any] | None) -> str:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return ""


def _conditions(
    codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]]
) -> Iterable[ConditionFact]:
    for res in resources:
        code = obj(res, "code")
        concepts: set[str] = set()
        first: Mapping[str, Any] | None = None
        for coding in codings(code):
            found = codesets.condition_concepts(text(coding, "system"), text(coding, "code"))
            if found:
                concepts |= found
                first = first or coding
        if not concepts or first is None or not pool.valid(res):
            continue
        verification = _status_code(res.get("verificationStatus"))
        if verification in _IGNORED_VERIFICATION:
            continue
        try:
            clinical = ClinicalStatus(_status_code(res.get("clinicalStatus")) or "unspecified")
        except ValueError:
            clinical = ClinicalStatus.UNSPECIFIED
        onset_period = res.get("onsetPeriod") or {}
        abatement_period = res.get("abatementPeriod") or {}
        yield ConditionFact(
            id=res["id"],
            concepts=frozenset(concepts),
            code=str(first.get("code")),
            system=str(system_key(first.get("system")) or first.get("system")),
            display=str(first.get("display") or code.get("text") or first.get("code")),
            clinical_status=clinical,
            verification_status=verification or "unspecified",
            onset=parse_day(res.get("onsetDateTime")) or parse_day(onset_period.get("start")),
            abatement=parse_day(res.get("abatementDateTime")) or parse_day(abatement_period.get("end")),
            recorded=parse_day(res.get("recordedDate")),
        )


def _observation_groups(codesets: CodeSets, concept: Any) -> set[str]:
    return {g for c in codings(concept) if (g := codesets.observation_group(text(c, "system"), text(c, "code")))}


def _number(res: dict[str, Any]) -> float | None:
    quantity = res.get("valueQuantity") or {}
    if quantity.get("value") is not None:
        return float(quantity["value"])
    if res.get("valueInteger") is not None:
        return float(res["valueInteger"])
    return None


def _is_positive(res: dict[str, Any]) -> bool:
    for interp in res.get("interpretation") or []:
        for coding in interp.get("coding") or []:
            if str(coding.get("code") or "").upper() in _POSITIVE_INTERPRETATION:
                return True
    value = res.get("valueCodeableConcept") or {}
    texts = [value.get("text") or ""] + [c.get("display") or c.get("code") or "" for c in value.get("coding") or []]
    texts.append(res.get("valueString") or "")
    return any(_POSITIVE_TEXT.match(str(t)) for t in texts if t)


def _observations(
    codesets: CodeSets,
    pool: ResourcePool,
    resources: Iterable[dict[str, Any]],
    skipped: list[SkippedEntry],
    since: dt.date | None = None,
) -> tuple[list[ScoreFact], list[BloodPressureFact], list[LabResultFact]]:
    scores: list[ScoreFact] = []
    pressures: list[BloodPressureFact] = []
    labs: list[LabResultFact] = []
    # Standalone systolic and diastolic Observations taken at the same instant are one reading.
    halves: dict[tuple[str, str], dict[str, Any]] = {}
    for res in resources:
        groups = _observation_groups(codesets, res.get("code"))
        if not groups:
            continue
        day = effective_day(res)
        if since is not None and day is not None and day < since:
            continue
        if not pool.valid(res) or res.get("status") not in _FINAL_OBSERVATION:
            continue
        if day is None:
            skipped.append(SkippedEntry(f"Observation/{res['id']}", "Observation", "no effective date"))
            continue
        where = f"Observation/{res['id']}"
        if groups & {"phq9_total", "phq9_item9", "gad7_total"}:
            kind = ObservationKind(next(iter(groups & {"phq9_total", "phq9_item9", "gad7_total"})))
            value = _number(res)
            low, high = _SCORE_RANGES[kind]
            if value is None or not low <= value <= high:
                skipped.append(SkippedEntry(where, "Observation", f"{kind.value} value {value} outside {low}-{high}"))
                continue
            scores.append(ScoreFact(res["id"], kind, day, value))
        elif "bp_panel" in groups:
            systolic = diastolic = None
            for comp in res.get("component") or []:
                comp_groups = _observation_groups(codesets, comp.get("code"))
                value = _number(comp)
                if "systolic" in comp_groups:
                    systolic = value
                elif "diastolic" in comp_groups:
                    diastolic = value
            if systolic is None and diastolic is None:
                skipped.append(SkippedEntry(where, "Observation", "blood pressure panel without values"))
                continue
            pressures.append(BloodPressureFact(res["id"], day, systolic, diastolic))
        elif groups & {"systolic", "diastolic"}:
            value = _number(res)
            if value is None:
                continue
            stamp = str(res.get("effectiveDateTime") or day.isoformat())
            half = halves.setdefault((stamp, _subject_key(res)), {"id": res["id"], "day": day})
            half["systolic" if "systolic" in groups else "diastolic"] = value
        elif "pregnancy_test" in groups:
            labs.append(LabResultFact(res["id"], ObservationKind.PREGNANCY_TEST, "hCG",
                                      _first_code(res), day, _is_positive(res)))
        elif screens := groups & set(_DRUG_SCREENS):
            analyte = _DRUG_SCREENS[next(iter(screens))]
            labs.append(LabResultFact(res["id"], ObservationKind.DRUG_SCREEN, analyte,
                                      _first_code(res), day, _is_positive(res)))
    for half in halves.values():
        pressures.append(BloodPressureFact(half["id"], half["day"], half.get("systolic"), half.get("diastolic")))
    return scores, pressures, labs


def _subject_key(res: dict[str, Any]) -> str:
    return str((res.get("subject") or {}).get("reference") or "")


def _first_code(res: dict[str, Any]) -> str:
    for c in (res.get("code") or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return ""


def _allergies(
    codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]]
) -> Iterable[AllergyFact]:
    for res in resources:
        concepts = [obj(res, "code")] + [obj(r, "substance") for r in arr(res, "reaction")]
        for concept in concepts:
            codes = [text(c, "code") for c in codings(concept) if system_key(text(c, "system")) == "RXNORM"]
            names = [text(concept, "text")] + [text(c, "display") for c in codings(concept)]
            if any(c in codesets.ketamine_rxcuis for c in codes) or any(codesets.names_ketamine(n) for n in names):
                if not pool.valid(res):
                    break
                verification = _status_code(res.get("verificationStatus"))
                if verification in _IGNORED_VERIFICATION:
                    break
                substance = next((n for n in names if n), "ketamine")
                yield AllergyFact(
                    id=res["id"],
                    substance=substance,
                    clinical_status=_status_code(res.get("clinicalStatus")) or "active",
                    verification_status=verification or "unspecified",
                )
                break

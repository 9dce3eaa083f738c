"""MedicationStatement / MedicationRequest → antidepressant courses and medications of interest.

The ingredient is recognised from, in order: an RxNorm ingredient code, an RxNorm clinical-drug code (the VSAC SCD
lists), an ATC N06A code together with a drug name, and as a last resort the drug name alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._json import codings, obj, text
from .codesets import CodeSets, system_key
from .dates import duration_days, parse_day
from .dosage import Strength, dose_phases, strength_from_medication, strength_in_name, supply_days
from .facts import (
    Course,
    CurrentMedication,
    DataDomain,
    DataGap,
    DoseSegment,
    DoseSource,
    DrugClass,
    ExposureKind,
    GapReason,
    KetamineExposure,
    KetamineProduct,
    MatchMethod,
    MedicationCategory,
    NonAdherence,
    ResourceType,
)
from .loading import ResourcePool
from .orders import ketamine_concept

# Records that do not describe medication actually taken.
_SKIP_STATEMENT = {"entered-in-error", "not-taken", "intended"}
_SKIP_REQUEST = {"entered-in-error", "cancelled", "draft"}
_SKIP_REQUEST_INTENT = {"proposal", "plan"}
# Records that are still running when they have no end date.
_ONGOING = {"active", "on-hold"}

#: Successive records of one ingredient with at most this many days between them make one course.
DEFAULT_MERGE_GAP_DAYS = 30


@dataclass(frozen=True, slots=True)
class _Identified:
    ingredient: str
    drug_class: DrugClass
    method: MatchMethod
    strength: Strength | None


@dataclass(frozen=True, slots=True)
class _Record:
    ident: _Identified
    segment: DoseSegment


@dataclass(frozen=True, slots=True)
class MedicationFacts:
    courses: tuple[Course, ...]
    other: tuple[CurrentMedication, ...]
    unmatched: tuple[str, ...]
    #: Records whose referenced Medication could not be resolved and whose display names no drug.
    unresolved: tuple[DataGap, ...] = ()
    #: Ketamine/esketamine orders and statements: the course they make is the rules' (eligibility.course).
    ketamine: tuple[KetamineExposure, ...] = ()
    #: Antidepressants recorded as not taken as prescribed (issue #20).
    nonadherence: tuple[NonAdherence, ...] = ()
    #: Records that failed validation with no drug to read, by type (issue #20: their type is incomplete).
    unreadable: tuple[tuple[ResourceType, int], ...] = ()


def map_medications(
    pool: ResourcePool,
    codesets: CodeSets,
    resources: Iterable[dict[str, Any]],
    merge_gap_days: int = DEFAULT_MERGE_GAP_DAYS,
) -> MedicationFacts:
    records: list[_Record] = []
    other: list[CurrentMedication] = []
    unmatched: list[str] = []
    unresolved: list[DataGap] = []
    ketamine_records: list[KetamineExposure] = []
    nonadherence: list[NonAdherence] = []
    unreadable: dict[ResourceType, int] = {}
    # A chart names few distinct drugs in many records: recognise each distinct drug once.
    recognised: dict[str, tuple[bool, str | None, _Identified | None]] = {}
    for res in resources:
        rtype = res["resourceType"]
        status = text(res, "status") or "unknown"
        if rtype == ResourceType.MEDICATION_STATEMENT and status in codesets.non_adherence_statuses:
            # "Not taken" is no exposure, but during a trial it says the trial was not taken as prescribed.
            if (note := _statement_not_taken(pool, codesets, res)) is not None:
                nonadherence.append(note)
            continue
        if rtype == ResourceType.MEDICATION_STATEMENT and status in _SKIP_STATEMENT:
            continue
        if rtype == ResourceType.MEDICATION_REQUEST and (
            status in _SKIP_REQUEST or text(res, "intent") in _SKIP_REQUEST_INTENT
        ):
            continue
        concept, medication = referenced_medication(pool, res)
        names = _names(concept)
        evidence = f"{rtype}/{res['id']}"
        label = names[0] if names else "(unnamed medication)"
        if not names and not any(text(c, "code").strip() for c in codings(concept)) and \
                not text(obj(res, "medicationReference"), "reference") and not pool.valid(res):
            # Not valid, and no drug to read at all: the medication history is incomplete, never silently shorter.
            unreadable[ResourceType(rtype)] = unreadable.get(ResourceType(rtype), 0) + 1
            continue
        # Recognise the drug on the raw JSON first: only the records the rules use are validated.
        key = json.dumps([concept, medication.get("ingredient") if medication else None], sort_keys=True)
        if key not in recognised:
            ketamine = _is_ketamine(codesets, concept, names)
            stimulant = None if ketamine else next(
                (s for n in names if (s := codesets.psychostimulant_in_name(n))), None)
            recognised[key] = (ketamine, stimulant, None if ketamine or stimulant else
                               _identify(codesets, concept, names, medication))
        ketamine, stimulant, ident = recognised[key]
        depressant = None if ketamine or stimulant or ident else codesets.cns_depressant(concept, names)
        if depressant is not None:
            # A benzodiazepine, Z-drug or opioid: more sedation with esketamine (US PI §7.1 [S1, S53]). PRN use
            # counts too: a dose taken before a session sedates as much as a scheduled one.
            if pool.valid(res) and (medication is None or _valid_medication(pool, res, medication)):
                start, end, length_known = _exposure(res, status)
                if not length_known and status in _ONGOING:
                    end = None  # an active order with no supply or end written is taken until it is stopped
                other.append(CurrentMedication(depressant.ingredient, MedicationCategory.CNS_DEPRESSANT, start, end,
                                               status, evidence, depressant.drug_class))
            continue
        if not (ketamine or stimulant or ident):
            reference = text(obj(res, "medicationReference"), "reference")
            if medication is None and reference:
                # A Medication we could not read: the drug is unknown, so the medication history is incomplete.
                unresolved.append(DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE,
                                          f"{evidence} references {reference[:80]}, which could not be read",
                                          frozenset({DataDomain.MEDICATIONS})))
                continue
            unmatched.append(label)
            continue
        if not pool.valid(res) or (medication is not None and not _valid_medication(pool, res, medication)):
            continue
        start, end, length_known = _exposure(res, status)
        if ketamine:
            if start is not None:
                esketamine = ketamine_concept(concept, codesets)[1]
                kind = ExposureKind.STATEMENT if rtype == ResourceType.MEDICATION_STATEMENT else ExposureKind.REQUEST
                ketamine_records.append(KetamineExposure(
                    evidence, kind, KetamineProduct.ESKETAMINE_NASAL if esketamine else KetamineProduct.KETAMINE,
                    label, start, end, active=status in _ONGOING))
            continue
        if stimulant:
            other.append(CurrentMedication(stimulant, MedicationCategory.PSYCHOSTIMULANT, start, end, status,
                                           evidence))
            continue
        if ident is None or start is None:
            continue
        if ident.drug_class is DrugClass.MAOI:
            other.append(CurrentMedication(ident.ingredient, MedicationCategory.MAOI, start, end, status, evidence))
        if (why := _non_adherence(codesets, res)) is not None:
            nonadherence.append(NonAdherence(ident.ingredient, why[0] or start, evidence, why[1]))
        dosages = res.get("dosage") if rtype == ResourceType.MEDICATION_STATEMENT else res.get("dosageInstruction")
        phases = dose_phases(dosages if isinstance(dosages, list) else [], ident.strength)
        if all(ph.dose.prn for ph in phases):
            continue  # as-needed use is not a trial (the spec: PRN doses do not count)
        records.extend(_Record(ident, seg) for seg in _segments(phases, start, end, length_known, evidence))
    return MedicationFacts(_merge(records, merge_gap_days), tuple(other), tuple(dict.fromkeys(unmatched)),
                           tuple(unresolved), tuple(ketamine_records), tuple(nonadherence),
                           tuple(unreadable.items()))


def _non_adherence(codesets: CodeSets, res: dict[str, Any]) -> tuple[dt.date | None, str] | None:
    """(the day asserted, what it says) when a record says its drug was not taken as prescribed: a US Core
    medication-adherence extension coded for non-adherence, or a statusReason naming it."""
    for ext in res.get("extension") or []:
        if not isinstance(ext, dict) or text(ext, "url") != codesets.adherence_extension_url:
            continue
        parts = {text(e, "url"): e for e in ext.get("extension") or [] if isinstance(e, dict)}
        concept = obj(parts.get("medicationAdherence"), "valueCodeableConcept")
        coded = [c for c in codings(concept) if system_key(text(c, "system")) == "SNOMEDCT"
                 and text(c, "code").strip() in codesets.non_adherence_snomed]
        if coded:
            said = text(coded[0], "display") or text(concept, "text") or f"SNOMED CT {text(coded[0], 'code')}"
            return parse_day(parts.get("dateAsserted", {}).get("valueDateTime")), said
    for reason in res.get("statusReason") or []:
        label = " ".join([text(reason, "text"), *(text(c, "display") for c in codings(reason))])
        if codesets.says_non_adherence(label) or any(
                text(c, "code").strip() in codesets.non_adherence_snomed for c in codings(reason)):
            return None, label.strip() or "non-adherence"
    return None


def _statement_not_taken(pool: ResourcePool, codesets: CodeSets, res: dict[str, Any]) -> NonAdherence | None:
    """A MedicationStatement 'not-taken' of an antidepressant: the days it covers were not taken as prescribed."""
    concept, medication = referenced_medication(pool, res)
    ident = _identify(codesets, concept, _names(concept), medication)
    if ident is None or not pool.valid(res):
        return None
    start, _, _ = _exposure(res, "not-taken")
    day = start or parse_day(res.get("dateAsserted"))
    if day is None:
        return None
    reasons = [text(r, "text") or next((text(c, "display") for c in codings(r) if text(c, "display")), "")
               for r in res.get("statusReason") or [] if isinstance(r, dict)]
    said = "; ".join(r for r in reasons if r) or "not taken"
    return NonAdherence(ident.ingredient, day, f"MedicationStatement/{res['id']}", f"recorded as not taken ({said})")


def _segments(phases: list[Any], start: dt.date, end: dt.date | None, length_known: bool,
              evidence: str) -> list[DoseSegment]:
    """One segment per step of the record's schedule, laid one after another from the record's start."""
    segments: list[DoseSegment] = []
    cursor = start
    for i, phase in enumerate(phases):
        last = i == len(phases) - 1
        seg_end = end if last or phase.days is None else cursor + dt.timedelta(days=round(phase.days))
        if end is not None and seg_end is not None and seg_end > end:
            seg_end = end
        segments.append(DoseSegment(cursor, seg_end, phase.dose.mg,
                                    DoseSource.NONE if phase.dose.prn else phase.dose.source, evidence,
                                    length_known, phase.dose.frequency_assumed))
        if seg_end is None or (end is not None and seg_end >= end):
            break
        cursor = seg_end
    return segments


def referenced_medication(pool: ResourcePool, res: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The drug of a record (its concept, or its referenced Medication's code) and that Medication when resolved."""
    concept = obj(res, "medicationCodeableConcept")
    if concept:
        return concept, None
    reference = obj(res, "medicationReference")
    medication = pool.resolve(text(reference, "reference") or None, res)
    if medication is None:
        display = text(reference, "display")
        return ({"text": display} if display else {}), None
    return obj(medication, "code"), medication


def _valid_medication(pool: ResourcePool, res: dict[str, Any], medication: dict[str, Any]) -> bool:
    # A contained Medication was validated with its container; a referenced one is validated on its own.
    ref = text(obj(res, "medicationReference"), "reference")
    return ref.startswith("#") or pool.valid(medication)


def _names(concept: dict[str, Any]) -> list[str]:
    names = [d for c in codings(concept) if (d := text(c, "display"))]
    if text(concept, "text"):
        names.append(text(concept, "text"))
    return names


def _is_ketamine(codesets: CodeSets, concept: dict[str, Any], names: list[str]) -> bool:
    for coding in codings(concept):
        key, code = system_key(text(coding, "system")), text(coding, "code")
        if key == "RXNORM" and code in codesets.ketamine_rxcuis:
            return True
        if key == "NDC" and code.startswith(codesets.spravato_ndc_products):
            return True
    return any(codesets.names_ketamine(n) for n in names)


def _identify(
    codesets: CodeSets, concept: dict[str, Any], names: list[str], medication: dict[str, Any] | None
) -> _Identified | None:
    all_codings = codings(concept)
    method: MatchMethod | None = None
    ingredient = None
    name_for_strength = " ".join(names)
    for coding in all_codings:
        if system_key(text(coding, "system")) != "RXNORM":
            continue
        code = text(coding, "code")
        if code in codesets.antidepressants_by_rxcui:
            ingredient, method = codesets.antidepressants_by_rxcui[code], MatchMethod.RXNORM_INGREDIENT
            break
        drug = codesets.clinical_drugs.get(code)
        if drug is not None:
            found = codesets.antidepressant_in_name(drug.display)
            if found:
                ingredient, method = found[0], MatchMethod.RXNORM_CLINICAL_DRUG
                name_for_strength = drug.display + " " + name_for_strength
                break
    if ingredient is None:
        has_atc = any(
            system_key(text(c, "system")) == "ATC" and text(c, "code").upper().startswith("N06A")
            for c in all_codings
        )
        for name in names:
            found = codesets.antidepressant_in_name(name)
            if found:
                ingredient = found[0]
                method = (MatchMethod.ATC_AND_NAME if has_atc else MatchMethod.BRAND_NAME
                          if codesets.is_brand(name, ingredient.ingredient) else MatchMethod.NAME)
                break
    if ingredient is None or method is None:
        return None
    strength = strength_in_name(name_for_strength, ingredient.ingredient,
                                codesets.brands_by_ingredient.get(ingredient.ingredient, ()))
    if strength is None and medication is not None and isinstance(medication.get("ingredient"), list):
        strength = strength_from_medication(
            medication, lambda label: bool(codesets.antidepressant_in_name(label)) or ingredient.ingredient in label
        )
    return _Identified(ingredient.ingredient, ingredient.drug_class, method, strength)


def _exposure(res: dict[str, Any], status: str) -> tuple[dt.date | None, dt.date | None, bool]:
    """The period a record says the drug was taken (end None: still running), and whether its length is known.

    A MedicationStatement with only ``effectiveDateTime`` (or ``dateAsserted``), or a MedicationRequest with only
    ``authoredOn`` and no supply duration or validity end, says the drug was taken or prescribed that day, not for
    how long: its length is unknown (``_merge`` extends it to the next record of the same course).
    """
    length_known = True
    if res["resourceType"] == ResourceType.MEDICATION_STATEMENT:
        period = obj(res, "effectivePeriod")
        start = parse_day(period.get("start"))
        end = parse_day(period.get("end"))
        if start is None:
            start = parse_day(res.get("effectiveDateTime")) or parse_day(period.get("end")) or parse_day(
                res.get("dateAsserted"))
            end = start
            length_known = False
    else:
        dispense = obj(res, "dispenseRequest")
        validity = obj(dispense, "validityPeriod")
        start = parse_day(validity.get("start")) or parse_day(res.get("authoredOn"))
        end = parse_day(validity.get("end"))
        supply = duration_days(obj(dispense, "expectedSupplyDuration"))
        if supply is None:
            # No supply duration: the quantity at the prescribed rate, as Oracle Health sends it (issue #20).
            supply = supply_days(dispense.get("quantity"), res.get("dosageInstruction") or [])
        if end is None and start is not None and supply is not None:
            repeats = dispense.get("numberOfRepeatsAllowed")
            fills = 1 + (repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0 else 0)
            end = start + dt.timedelta(days=round(min(supply * fills, 3650)))
        elif end is None:
            end = start
            length_known = False
    if start is not None and end is None and status not in _ONGOING:
        # Finished, with no end date: no duration can be credited.
        end = start
    if start is not None and end is not None and end < start:
        end = start
    return start, end, length_known


def _merge(records: list[_Record], gap_days: int) -> tuple[Course, ...]:
    by_ingredient: dict[str, list[_Record]] = defaultdict(list)
    for record in records:
        by_ingredient[record.ident.ingredient].append(record)
    courses: list[Course] = []
    for group in by_ingredient.values():
        group.sort(key=lambda r: r.segment.start)
        current: list[_Record] = []
        current_end: dt.date | None = None
        for record in group:
            if current and current_end is not None and (record.segment.start - current_end).days > gap_days:
                courses.append(_course(current))
                current, current_end = [], None
            if not current:
                current_end = record.segment.end
            elif current_end is not None:
                current_end = None if record.segment.end is None else max(current_end, record.segment.end)
            current.append(record)
        if current:
            courses.append(_course(current))
    courses.sort(key=lambda c: (c.start, c.ingredient))
    return tuple(courses)


def _documented(records: list[_Record]) -> list[_Record]:
    """Records whose length is unknown run until the next record of the same course: successive refills document
    the span between them. The last one stays of unknown length."""
    out = []
    for i, record in enumerate(records):
        seg = record.segment
        if not seg.length_known and i + 1 < len(records):
            following = records[i + 1].segment.start
            if following > seg.start:
                seg = DoseSegment(seg.start, following, seg.daily_mg, seg.dose_source, seg.evidence, True,
                                  seg.frequency_assumed)
        out.append(_Record(record.ident, seg))
    return out


def _course(records: list[_Record]) -> Course:
    # The most specific identification of any record names the course's match method.
    order = list(MatchMethod)
    best = min(records, key=lambda r: order.index(r.ident.method))
    return Course(
        ingredient=best.ident.ingredient,
        drug_class=best.ident.drug_class,
        match_method=best.ident.method,
        segments=tuple(r.segment for r in _documented(records)),
    )

"""MedicationStatement / MedicationRequest → antidepressant courses and medications of interest.

The ingredient is recognised from, in order: an RxNorm ingredient code, an RxNorm clinical-drug code (the VSAC SCD
lists), an ATC N06A code together with a drug name, and as a last resort the drug name alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ._json import codings, obj, text
from .codesets import CnsDepressant, CodeSets, system_key
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


class _DrugKind(StrEnum):
    """What a record's drug is to the rules: each kind is read by a reader of its own (``_READERS``)."""

    KETAMINE = "ketamine"
    PSYCHOSTIMULANT = "psychostimulant"
    ANTIDEPRESSANT = "antidepressant"
    CNS_DEPRESSANT = "cns_depressant"
    UNRECOGNISED = "unrecognised"


@dataclass(frozen=True, slots=True)
class _Recognised:
    kind: _DrugKind
    stimulant: str = ""
    ident: _Identified | None = None
    depressant: CnsDepressant | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One MedicationStatement or MedicationRequest that describes medication taken, with the drug it names."""

    res: dict[str, Any]
    status: str
    concept: dict[str, Any]
    medication: dict[str, Any] | None
    names: list[str]

    @property
    def rtype(self) -> str:
        return str(self.res["resourceType"])

    @property
    def evidence(self) -> str:
        return f"{self.rtype}/{self.res['id']}"

    @property
    def label(self) -> str:
        return self.names[0] if self.names else "(unnamed medication)"


@dataclass(slots=True)
class _Found:
    """What a patient's medication records give, as they are read."""

    pool: ResourcePool
    codesets: CodeSets
    records: list[_Record] = field(default_factory=list)
    other: list[CurrentMedication] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    unresolved: list[DataGap] = field(default_factory=list)
    ketamine: list[KetamineExposure] = field(default_factory=list)
    nonadherence: list[NonAdherence] = field(default_factory=list)
    unreadable: dict[ResourceType, int] = field(default_factory=dict)
    # A chart names few distinct drugs in many records: recognise each distinct drug once.
    recognised: dict[str, _Recognised] = field(default_factory=dict)

    def usable(self, entry: _Entry) -> bool:
        """Valid, and so is the Medication it references: only the records the rules use are validated."""
        return self.pool.valid(entry.res) and (
            entry.medication is None or _valid_medication(self.pool, entry.res, entry.medication))


def map_medications(
    pool: ResourcePool,
    codesets: CodeSets,
    resources: Iterable[dict[str, Any]],
    merge_gap_days: int = DEFAULT_MERGE_GAP_DAYS,
) -> MedicationFacts:
    found = _Found(pool, codesets)
    for res in resources:
        entry = _entry(found, res)
        if entry is not None:
            recognised = _recognise(found, entry)
            _READERS[recognised.kind](found, entry, recognised)
    return MedicationFacts(_merge(found.records, merge_gap_days), tuple(found.other),
                           tuple(dict.fromkeys(found.unmatched)), tuple(found.unresolved), tuple(found.ketamine),
                           tuple(found.nonadherence), tuple(found.unreadable.items()))


def _request_not_taken(res: dict[str, Any], status: str) -> bool:
    return status in _SKIP_REQUEST or text(res, "intent") in _SKIP_REQUEST_INTENT


#: Records that do not describe medication actually taken, by type.
_NOT_TAKEN: dict[ResourceType, Callable[[dict[str, Any], str], bool]] = {
    ResourceType.MEDICATION_STATEMENT: lambda _, status: status in _SKIP_STATEMENT,
    ResourceType.MEDICATION_REQUEST: _request_not_taken,
}


def _entry(found: _Found, res: dict[str, Any]) -> _Entry | None:
    """The record as an entry to read, or None: not medication taken, or no drug to read at all (counted)."""
    rtype = res["resourceType"]
    status = text(res, "status") or "unknown"
    if rtype == ResourceType.MEDICATION_STATEMENT and status in found.codesets.non_adherence_statuses:
        # "Not taken" is no exposure, but during a trial it says the trial was not taken as prescribed.
        if (note := _statement_not_taken(found.pool, found.codesets, res)) is not None:
            found.nonadherence.append(note)
        return None
    not_taken = _NOT_TAKEN.get(rtype)
    if not_taken is not None and not_taken(res, status):
        return None
    concept, medication = referenced_medication(found.pool, res)
    names = _names(concept)
    if not names and not any(text(c, "code").strip() for c in codings(concept)) and \
            not text(obj(res, "medicationReference"), "reference") and not found.pool.valid(res):
        # Not valid, and no drug to read at all: the medication history is incomplete, never silently shorter.
        found.unreadable[ResourceType(rtype)] = found.unreadable.get(ResourceType(rtype), 0) + 1
        return None
    return _Entry(res, status, concept, medication, names)


def _recognise(found: _Found, entry: _Entry) -> _Recognised:
    """The drug, recognised on the raw JSON (only the records the rules use are validated), once per drug."""
    medication = entry.medication
    key = json.dumps([entry.concept, medication.get("ingredient") if medication else None], sort_keys=True)
    if key not in found.recognised:
        found.recognised[key] = _recognised(found.codesets, entry.concept, entry.names, medication)
    return found.recognised[key]


def _recognised(codesets: CodeSets, concept: dict[str, Any], names: list[str],
                medication: dict[str, Any] | None) -> _Recognised:
    if _is_ketamine(codesets, concept, names):
        return _Recognised(_DrugKind.KETAMINE)
    if stimulant := next((s for n in names if (s := codesets.psychostimulant_in_name(n))), None):
        return _Recognised(_DrugKind.PSYCHOSTIMULANT, stimulant=stimulant)
    if ident := _identify(codesets, concept, names, medication):
        return _Recognised(_DrugKind.ANTIDEPRESSANT, ident=ident)
    if depressant := codesets.cns_depressant(concept, names):
        return _Recognised(_DrugKind.CNS_DEPRESSANT, depressant=depressant)
    return _Recognised(_DrugKind.UNRECOGNISED)


# -- the readers, one per kind of drug -----------------------------------------------------------------------------

def _cns_depressant(found: _Found, entry: _Entry, drug: _Recognised) -> None:
    """A benzodiazepine, Z-drug or opioid: more sedation with esketamine (US PI §7.1 [S1, S53]). PRN use counts
    too: a dose taken before a session sedates as much as a scheduled one."""
    assert drug.depressant is not None
    if not found.usable(entry):
        return
    start, end, length_known = _exposure(entry.res, entry.status)
    if not length_known and entry.status in _ONGOING:
        end = None  # an active order with no supply or end written is taken until it is stopped
    found.other.append(CurrentMedication(drug.depressant.ingredient, MedicationCategory.CNS_DEPRESSANT, start, end,
                                         entry.status, entry.evidence, drug.depressant.drug_class))


def _unrecognised(found: _Found, entry: _Entry, _: _Recognised) -> None:
    reference = text(obj(entry.res, "medicationReference"), "reference")
    if entry.medication is None and reference:
        # A Medication we could not read: the drug is unknown, so the medication history is incomplete.
        found.unresolved.append(DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE,
                                        f"{entry.evidence} references {reference[:80]}, which could not be read",
                                        frozenset({DataDomain.MEDICATIONS})))
    else:
        found.unmatched.append(entry.label)


def _ketamine(found: _Found, entry: _Entry, _: _Recognised) -> None:
    if not found.usable(entry):
        return
    start, end, _known = _exposure(entry.res, entry.status)
    if start is None:
        return
    esketamine = ketamine_concept(entry.concept, found.codesets)[1]
    kind = ExposureKind.STATEMENT if entry.rtype == ResourceType.MEDICATION_STATEMENT else ExposureKind.REQUEST
    found.ketamine.append(KetamineExposure(
        entry.evidence, kind, KetamineProduct.ESKETAMINE_NASAL if esketamine else KetamineProduct.KETAMINE,
        entry.label, start, end, active=entry.status in _ONGOING))


def _psychostimulant(found: _Found, entry: _Entry, drug: _Recognised) -> None:
    if not found.usable(entry):
        return
    start, end, _known = _exposure(entry.res, entry.status)
    found.other.append(CurrentMedication(drug.stimulant, MedicationCategory.PSYCHOSTIMULANT, start, end,
                                         entry.status, entry.evidence))


def _antidepressant(found: _Found, entry: _Entry, drug: _Recognised) -> None:
    """An antidepressant: the segments of its trial (as-needed use is none), an MAOI, a note of non-adherence."""
    ident, res = drug.ident, entry.res
    assert ident is not None
    if not found.usable(entry):
        return
    start, end, length_known = _exposure(res, entry.status)
    if start is None:
        return
    if ident.drug_class is DrugClass.MAOI:
        found.other.append(CurrentMedication(ident.ingredient, MedicationCategory.MAOI, start, end, entry.status,
                                             entry.evidence))
    if (why := _non_adherence(found.codesets, res)) is not None:
        found.nonadherence.append(NonAdherence(ident.ingredient, why[0] or start, entry.evidence, why[1]))
    dosages = res.get("dosage") if entry.rtype == ResourceType.MEDICATION_STATEMENT else res.get("dosageInstruction")
    phases = dose_phases(dosages if isinstance(dosages, list) else [], ident.strength)
    if all(ph.dose.prn for ph in phases):
        return  # as-needed use is not a trial (the spec: PRN doses do not count)
    found.records.extend(_Record(ident, seg) for seg in _segments(phases, start, end, length_known, entry.evidence))


_READERS: dict[_DrugKind, Callable[[_Found, _Entry, _Recognised], None]] = {
    _DrugKind.KETAMINE: _ketamine,
    _DrugKind.PSYCHOSTIMULANT: _psychostimulant,
    _DrugKind.ANTIDEPRESSANT: _antidepressant,
    _DrugKind.CNS_DEPRESSANT: _cns_depressant,
    _DrugKind.UNRECOGNISED: _unrecognised,
}


def _non_adherence(codesets: CodeSets, res: dict[str, Any]) -> tuple[dt.date | None, str] | None:
    """(the day asserted, what it says) when a record says its drug was not taken as prescribed: a US Core
    medication-adherence extension coded for non-adherence, or a statusReason naming it."""
    return _adherence_extension(codesets, res) or _status_reason(codesets, res)


def _adherence_extension(codesets: CodeSets, res: dict[str, Any]) -> tuple[dt.date | None, str] | None:
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
    return None


def _status_reason(codesets: CodeSets, res: dict[str, Any]) -> tuple[dt.date | None, str] | None:
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
    period = _statement_period if res["resourceType"] == ResourceType.MEDICATION_STATEMENT else _request_period
    start, end, length_known = period(res)
    if start is not None and end is None and status not in _ONGOING:
        # Finished, with no end date: no duration can be credited.
        end = start
    if start is not None and end is not None and end < start:
        end = start
    return start, end, length_known


def _statement_period(res: dict[str, Any]) -> tuple[dt.date | None, dt.date | None, bool]:
    period = obj(res, "effectivePeriod")
    start = parse_day(period.get("start"))
    if start is not None:
        return start, parse_day(period.get("end")), True
    day = parse_day(res.get("effectiveDateTime")) or parse_day(period.get("end")) or parse_day(res.get("dateAsserted"))
    return day, day, False


def _request_period(res: dict[str, Any]) -> tuple[dt.date | None, dt.date | None, bool]:
    dispense = obj(res, "dispenseRequest")
    validity = obj(dispense, "validityPeriod")
    start = parse_day(validity.get("start")) or parse_day(res.get("authoredOn"))
    end = parse_day(validity.get("end"))
    if end is not None or start is None:
        return start, end if end is not None else start, end is not None
    supply = duration_days(obj(dispense, "expectedSupplyDuration"))
    if supply is None:
        # No supply duration: the quantity at the prescribed rate, as Oracle Health sends it (issue #20).
        supply = supply_days(dispense.get("quantity"), res.get("dosageInstruction") or [])
    if supply is None:
        return start, start, False
    repeats = dispense.get("numberOfRepeatsAllowed")
    fills = 1 + (repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0 else 0)
    return start, start + dt.timedelta(days=round(min(supply * fills, 3650))), True


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

"""A patient's Observations → scores, blood pressures and lab results: one reader per observation group.

Every Observation is first checked the same way (a group we read, within the days the rules read, a status, a day);
then the reader of its group reads it (:data:`_READERS`, in order of precedence: a PHQ-9 panel before its items,
items before scores, and so on). An entry that fails validation is still read where its code and status can be
(issue #20), its findings marked so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets
from .dates import effective_day
from .facts import (
    FROM_INVALID_ENTRY,
    BloodPressureFact,
    LabResultFact,
    ObservationGroup,
    ObservationKind,
    ResourceType,
    ScoreFact,
    SkippedEntry,
)
from .loading import ResourcePool
from .scores import ITEM9, TOTAL_CODES, PanelItems, item_code, panel_scores, score, score_value
from .values import count_unreadable, first_code, number_value, plausible_mmhg, readable_code, subject_key

_G = ObservationGroup
_FINAL_OBSERVATION = {"final", "amended", "corrected"}
#: FHIR R4 ObservationStatus: a status one of these is readable (whether or not it is final).
_OBSERVATION_STATUSES = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                         "entered-in-error", "unknown"}
_BP_GROUPS = frozenset({_G.BP_PANEL, _G.SYSTOLIC, _G.DIASTOLIC})
_POSITIVE_INTERPRETATION = {"POS", "A", "AA", "H", "HH", "HU", "DET"}
_NEGATIVE_INTERPRETATION = {"NEG", "N", "ND", "L", "LL"}
# SNOMED CT qualifier values an EHR puts in valueCodeableConcept: Positive, Detected, Present (clinical.md §5 uses
# these words; the codes are the SNOMED qualifiers of the same name).
_POSITIVE_CODES = {"10828004", "260373001", "52101004"}
_PREGNANT = "77386006"
_POSITIVE_TEXT = re.compile(r"^\s*(positive|detected|reactive|present)\b", re.I)
_TRUE_TEXT = re.compile(r"^\s*(yes|true|current|positive|present)\b", re.I)
#: The lab results read as positive or not: each group's kind and what it tests for.
_TESTS = {
    _G.PREGNANCY_TEST: (ObservationKind.PREGNANCY_TEST, "hCG"),
    _G.DRUG_SCREEN_COCAINE: (ObservationKind.DRUG_SCREEN, "cocaine"),
    _G.DRUG_SCREEN_AMPHETAMINES: (ObservationKind.DRUG_SCREEN, "amphetamines"),
    _G.DRUG_SCREEN_PCP: (ObservationKind.DRUG_SCREEN, "phencyclidine"),
    _G.DRUG_SCREEN_KETAMINE: (ObservationKind.DRUG_SCREEN, "ketamine"),
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One Observation that passed the checks every group shares."""

    res: dict[str, Any]
    groups: frozenset[str]
    day: dt.date
    #: ``FROM_INVALID_ENTRY`` when the entry failed validation and is read leniently, else empty.
    note: str
    #: A blood pressure in an entry that failed validation: with no reading left in it, blood pressure is unknown.
    lenient_bp: bool

    @property
    def where(self) -> str:
        return f"Observation/{self.res['id']}"


@dataclass(slots=True)
class _Found:
    """What a patient's Observations give, as they are read."""

    codesets: CodeSets
    skipped: list[SkippedEntry]
    unreadable_bp: list[str] | None
    scores: list[ScoreFact] = field(default_factory=list)
    pressures: list[BloodPressureFact] = field(default_factory=list)
    labs: list[LabResultFact] = field(default_factory=list)
    # Standalone systolic and diastolic Observations taken at the same instant are one reading.
    halves: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # PHQ-9 item Observations (US Core: one Observation per item, the panel's hasMember), for a total none recorded.
    items: PanelItems = field(default_factory=PanelItems)

    def skip(self, entry: _Entry, why: str) -> None:
        self.skipped.append(SkippedEntry(entry.where, "Observation", why))

    def bp_unreadable(self, where: str) -> None:
        if self.unreadable_bp is not None:
            self.unreadable_bp.append(where)

    def add_score(self, entry: _Entry, kind: ObservationKind, value: float | None, why: str) -> None:
        fact = score(entry.res["id"], kind, entry.day, value, entry.where, self.skipped, why, entry.note)
        if fact is not None:
            self.scores.append(fact)


def read_observations(
    codesets: CodeSets,
    pool: ResourcePool,
    resources: Iterable[dict[str, Any]],
    skipped: list[SkippedEntry],
    since: dt.date | None = None,
    bp_since: dt.date | None = None,
    unreadable: dict[ResourceType, int] | None = None,
    unreadable_bp: list[str] | None = None,
) -> tuple[list[ScoreFact], list[BloodPressureFact], list[LabResultFact]]:
    """The scores, blood pressures and lab results; entries skipped go to ``skipped`` with the reason, entries
    with no readable code are counted in ``unreadable``, blood pressures with no readable value in
    ``unreadable_bp``. ``since`` and ``bp_since``: the earliest day any rule reads."""
    found = _Found(codesets, skipped, unreadable_bp)
    for res in resources:
        entry = _entry(found, pool, res, since, bp_since, unreadable)
        if entry is not None:
            _read(found, entry)
    for half in found.halves.values():
        found.pressures.append(BloodPressureFact(half["id"], half["day"], half.get("systolic"),
                                                 half.get("diastolic"), note=half["note"]))
    found.scores.extend(found.items.computed_totals())
    return found.scores, found.pressures, found.labs


def _entry(found: _Found, pool: ResourcePool, res: dict[str, Any], since: dt.date | None, bp_since: dt.date | None,
           unreadable: dict[ResourceType, int] | None) -> _Entry | None:
    """The Observation as an entry to read, or None when no rule reads it (reported where that is news)."""
    groups = frozenset(found.codesets.observation_groups(res.get("code")))
    if not groups:
        if not readable_code(obj(res, "code")):
            count_unreadable(pool, res, unreadable)
        return None
    day = effective_day(res)
    if day is not None and ((since is not None and day < since) or (
            bp_since is not None and day < bp_since and groups & _BP_GROUPS)):
        return None  # older than any rule (or, for blood pressures, any rule or chart) reads: not validated
    valid = pool.valid(res)
    status = text(res, "status").strip().lower()
    # A blood pressure in an entry that fails validation is read as leniently as a score (issue #20): its code
    # and status readable, the values and day that can be read stand, marked so; with none readable (or no
    # status that says what it is) it is not 'no reading' but blood pressure unknown.
    lenient_bp = not valid and bool(groups & _BP_GROUPS)
    if lenient_bp and (status not in _OBSERVATION_STATUSES or day is None):
        found.bp_unreadable(f"Observation/{res['id']}")
        return None
    if status not in _FINAL_OBSERVATION:
        return None
    if day is None:
        found.skipped.append(SkippedEntry(f"Observation/{res['id']}", "Observation", "no effective date"))
        return None
    return _Entry(res, groups, day, "" if valid else FROM_INVALID_ENTRY, lenient_bp)


def _read(found: _Found, entry: _Entry) -> None:
    """The first reader, in order of precedence, of a group of the entry's that reads it."""
    for group, reader in _READERS.items():
        if group in entry.groups and reader(found, entry, group):
            return


# -- the readers: each returns whether it read the entry (False: the next group's reader is tried) ----------------

def _phq9_panel(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    found.items.panel(entry.res)
    found.scores.extend(panel_scores(found.codesets, entry.res, entry.day, found.skipped, entry.note))
    return True


def _phq9_member(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    """A PHQ-9 item or total kept as an Observation of its own: kept for the total of its administration."""
    member = item_code(entry.res)
    if member is None:
        return False
    value, why = score_value(found.codesets, entry.res)
    found.items.add(entry.res, member, value, entry.day)
    if member in TOTAL_CODES or member == ITEM9:
        found.add_score(entry, ObservationKind.PHQ9_TOTAL if member in TOTAL_CODES else ObservationKind.PHQ9_ITEM9,
                        value, why)
    return True


def _score(found: _Found, entry: _Entry, group: ObservationGroup) -> bool:
    value, why = score_value(found.codesets, entry.res)
    found.add_score(entry, ObservationKind(group.value), value, why)
    return True


def _phq9_member_or_score(found: _Found, entry: _Entry, group: ObservationGroup) -> bool:
    """A PHQ-9 total or item 9: as a member of its administration when its code is the item's, else a score."""
    return _phq9_member(found, entry, group) or _score(found, entry, group)


def _bp_panel(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    systolic = diastolic = None
    for comp in arr(entry.res, "component"):
        comp_groups = found.codesets.observation_groups(comp.get("code"))
        value = number_value(comp)
        if _G.SYSTOLIC in comp_groups:
            systolic = value
        elif _G.DIASTOLIC in comp_groups:
            diastolic = value
    if systolic is None and diastolic is None:
        if entry.lenient_bp:
            found.bp_unreadable(entry.where)
        else:
            found.skip(entry, "blood pressure panel without values")
    elif not all(plausible_mmhg(v) for v in (systolic, diastolic) if v is not None):
        found.skip(entry, "implausible blood pressure value")
    else:
        found.pressures.append(BloodPressureFact(entry.res["id"], entry.day, systolic, diastolic, note=entry.note))
    return True


def _bp_half(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    """A systolic or a diastolic of its own: joined to the other half taken at the same instant."""
    value = number_value(entry.res)
    if value is None:
        if entry.lenient_bp:
            found.bp_unreadable(entry.where)
        return True
    if not plausible_mmhg(value):
        found.skip(entry, "implausible blood pressure value")
        return True
    res = entry.res
    stamp = str(res.get("effectiveDateTime") or entry.day.isoformat())
    half = found.halves.setdefault((stamp, subject_key(res)), {"id": res["id"], "day": entry.day, "note": ""})
    half["systolic" if _G.SYSTOLIC in entry.groups else "diastolic"] = value
    half["note"] = half["note"] or entry.note
    return True


def _pregnancy_status(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    res = entry.res
    pregnant = any(text(c, "code") == _PREGNANT for c in codings(obj(res, "valueCodeableConcept")))
    found.labs.append(LabResultFact(res["id"], ObservationKind.PREGNANCY_STATUS, "pregnancy status", first_code(res),
                                    entry.day, pregnant, note=entry.note))
    return True


def _misuse_status(found: _Found, entry: _Entry, _: ObservationGroup) -> bool:
    """A social-history Observation coded for drug misuse (US Core's substance-use status) or for alcohol misuse
    (issue #20): its value says whether the misuse is current."""
    res = entry.res
    current = _records_use(res)
    substance = "alcohol" if _G.ALCOHOL_MISUSE_STATUS in entry.groups else _substance(res)
    found.labs.append(LabResultFact(res["id"], ObservationKind.SUBSTANCE_USE_STATUS, substance, first_code(res),
                                    entry.day, bool(current), interpretable=current is not None, note=entry.note))
    return True


def _test(found: _Found, entry: _Entry, group: ObservationGroup) -> bool:
    """A pregnancy test or a drug screen: positive, negative, or not interpretable."""
    kind, analyte = _TESTS[group]
    res = entry.res
    positive = _is_positive(res)
    found.labs.append(LabResultFact(res["id"], kind, analyte, first_code(res), entry.day, bool(positive),
                                    interpretable=positive is not None, note=entry.note))
    return True


_Reader = Callable[[_Found, _Entry, ObservationGroup], bool]
#: The reader of each group, in order of precedence (an entry of several groups is read by the first that reads it).
_READERS: dict[ObservationGroup, _Reader] = {
    _G.PHQ9_PANEL: _phq9_panel,
    _G.PHQ9_ITEM: _phq9_member,
    _G.PHQ9_ITEM9: _phq9_member_or_score,
    _G.PHQ9_TOTAL: _phq9_member_or_score,
    _G.GAD7_TOTAL: _score,
    _G.BP_PANEL: _bp_panel,
    _G.SYSTOLIC: _bp_half,
    _G.DIASTOLIC: _bp_half,
    _G.PREGNANCY_STATUS: _pregnancy_status,
    _G.SUBSTANCE_USE_STATUS: _misuse_status,
    _G.ALCOHOL_MISUSE_STATUS: _misuse_status,
    _G.PREGNANCY_TEST: _test,
    _G.DRUG_SCREEN_COCAINE: _test,
    _G.DRUG_SCREEN_AMPHETAMINES: _test,
    _G.DRUG_SCREEN_PCP: _test,
    _G.DRUG_SCREEN_KETAMINE: _test,
}


def _is_positive(res: dict[str, Any]) -> bool | None:
    """True / False for a qualitative or interpreted result; None when it cannot be read as either."""
    for interp in arr(res, "interpretation"):
        for coding in codings(interp):
            code = text(coding, "code").upper()
            if code in _POSITIVE_INTERPRETATION:
                return True
            if code in _NEGATIVE_INTERPRETATION:
                return False
    value = obj(res, "valueCodeableConcept")
    if any(text(c, "code") in _POSITIVE_CODES for c in codings(value)):
        return True
    texts = [text(value, "text"), *(text(c, "display") or text(c, "code") for c in codings(value)),
             text(res, "valueString")]
    if any(_POSITIVE_TEXT.match(t) for t in texts if t):
        return True
    if value or text(res, "valueString"):
        return False
    quantity = obj(res, "valueQuantity")
    if quantity:
        # A quantitative hCG with no interpretation: positive above its own reference range, else not readable.
        amount = number_value(res)
        highs = [number_value({"valueQuantity": obj(r, "high")}) for r in arr(res, "referenceRange")]
        high = next((h for h in highs if h is not None), None)
        if amount is not None and high is not None:
            return amount > high
    return None


def _records_use(res: dict[str, Any]) -> bool | None:
    """True when a substance-use status records current use (US Core: valueBoolean true), False when it records
    none, None when its value cannot be read."""
    value = res.get("valueBoolean")
    if isinstance(value, bool):
        return value
    concept = obj(res, "valueCodeableConcept")
    labels = [text(concept, "text"), *(text(c, "display") for c in codings(concept)), text(res, "valueString")]
    if any(_TRUE_TEXT.match(t) for t in labels if t):
        return True
    if any(t for t in labels):
        return False
    return None


def _substance(res: dict[str, Any]) -> str:
    """The drug a substance-use status names (its 'Drug or medicament' component), else 'substance'."""
    for comp in arr(res, "component"):
        concept = obj(comp, "valueCodeableConcept")
        name = text(concept, "text") or next((text(c, "display") for c in codings(concept) if text(c, "display")), "")
        if name:
            return name.lower()
    return "substance"


def one_reading_a_day(pressures: list[BloodPressureFact]) -> list[BloodPressureFact]:
    """Readings on one day count as one: the lowest systolic and the lowest diastolic of that day (as the HEDIS
    blood-pressure measure does), kept under the id of the reading with the lowest systolic."""
    by_day: dict[dt.date, list[BloodPressureFact]] = {}
    for b in pressures:
        by_day.setdefault(b.day, []).append(b)
    out = []
    for day in sorted(by_day):
        readings = by_day[day]
        systolics = [b.systolic for b in readings if b.systolic is not None]
        diastolics = [b.diastolic for b in readings if b.diastolic is not None]
        lowest = min(readings, key=lambda b: (b.systolic is None, b.systolic or 0.0))
        lowest_diastolic = min(readings, key=lambda b: (b.diastolic is None, b.diastolic or 0.0))
        # The mark of an entry read leniently stays with the value it gave.
        note = lowest.note or lowest_diastolic.note
        out.append(BloodPressureFact(lowest.id, day, min(systolics, default=None), min(diastolics, default=None),
                                     len(readings), note))
    return out

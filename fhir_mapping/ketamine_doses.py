"""Ketamine and esketamine doses given (MedicationAdministration) or dispensed (MedicationDispense) → the records of a
course of treatment.

Only what was actually given counts: an administration ``completed`` or ``in-progress``, a dispense ``completed`` or
``in-progress`` (esketamine is dispensed to the certified setting for one session [REMS, clinical.md §3c], so a
dispense stands for one session's dose when no administration is charted). Anything else (``not-done``,
``entered-in-error``, ``stopped`` before the dose, a dispense ``declined`` or ``cancelled``) is not a dose.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._json import obj, text
from .codesets import CodeSets
from .dates import effective_day, parse_day
from .facts import DataDomain, DataGap, ExposureKind, GapReason, KetamineExposure, KetamineProduct, ResourceType
from .loading import ResourcePool
from .medications import referenced_medication
from .orders import ketamine_concept, quantity_mg

_GIVEN = {"completed", "in-progress"}


def _dose_mg(res: dict[str, Any]) -> float | None:
    """The dose given, when the record states it in mg (MedicationAdministration.dosage.dose)."""
    return quantity_mg(obj(obj(res, "dosage"), "dose"))


def ketamine_doses(
    pool: ResourcePool,
    codesets: CodeSets,
    administrations: Iterable[dict[str, Any]],
    dispenses: Iterable[dict[str, Any]],
) -> tuple[list[KetamineExposure], list[DataGap]]:
    """The ketamine/esketamine doses among these records, and a gap for each record given whose drug cannot be read
    (it might be ketamine: the course is then incomplete, never silently shorter)."""
    doses: list[KetamineExposure] = []
    gaps: list[DataGap] = []
    for kind, records in ((ExposureKind.ADMINISTRATION, administrations), (ExposureKind.DISPENSE, dispenses)):
        for res in records:
            if text(res, "status") not in _GIVEN:
                continue
            concept, medication = referenced_medication(pool, res)
            # A reference that resolves nowhere cannot be read (its display alone may still name a drug).
            readable = medication is not None or bool(obj(res, "medicationCodeableConcept")) \
                or not text(obj(res, "medicationReference"), "reference")
            reference = f"{res['resourceType']}/{res['id']}"
            if not readable:
                gaps.append(DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE,
                                    f"the drug of a dose given ({reference}) could not be read",
                                    frozenset({DataDomain.TREATMENT_COURSE})))
                continue
            found, esketamine = ketamine_concept(concept, codesets)
            if not found or not pool.valid(res):
                continue
            if kind is ExposureKind.ADMINISTRATION:
                day = effective_day(res)
            else:
                day = parse_day(res.get("whenHandedOver")) or parse_day(res.get("whenPrepared"))
            if day is None:
                continue
            names = [text(concept, "text"), *(text(c, "display") for c in concept.get("coding") or []
                                              if isinstance(c, dict))]
            name = next((n for n in names if n), "esketamine" if esketamine else "ketamine")
            doses.append(KetamineExposure(
                reference, kind, KetamineProduct.ESKETAMINE_NASAL if esketamine else KetamineProduct.KETAMINE,
                name, day, day, dose_mg=_dose_mg(res) if kind is ExposureKind.ADMINISTRATION else None))
    return doses, gaps

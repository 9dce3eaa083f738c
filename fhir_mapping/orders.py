"""Recognising a ketamine or esketamine order (a draft MedicationRequest) and how it is to be given.

Used at order time: the CDS service acts only on these orders and answers every other order with no cards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets, system_key

# The FDA's 2023 warning concerns compounded products and oral/at-home use outside REMS monitoring [S13 in
# shared/reference/clinical.md]; these words in an order's drug name, form, route or instructions point there.
_COMPOUNDED = re.compile(r"\b(compound(ed)?|compounding|troche|lozenge|rdt|rapid[- ]dissolv\w*)\b", re.I)
_ORAL = re.compile(r"\b(oral|by mouth|po|orally|capsule|tablet|troche|lozenge)\b", re.I)
_SUBLINGUAL = re.compile(r"\b(sublingual|sl|under the tongue|buccal)\b", re.I)
_AT_HOME = re.compile(r"\b(at[- ]home|home use|self[- ]administ\w*|take at home)\b", re.I)


@dataclass(frozen=True, slots=True)
class KetamineOrder:
    """A draft order for ketamine or esketamine, with what its text says about the product."""

    reference: str
    name: str
    esketamine: bool
    compounded: bool
    oral: bool
    sublingual: bool
    at_home: bool
    #: The dose the order states per administration, in mg (``doseQuantity`` in mg), when it states one.
    dose_mg: float | None = None

    @property
    def outside_label(self) -> bool:
        """Compounded, oral, sublingual or at-home: the FDA 2023 warning applies."""
        return self.compounded or self.oral or self.sublingual or self.at_home


def _concept(order: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    concept = obj(order, "medicationCodeableConcept")
    if concept:
        return concept, None
    ref = text(obj(order, "medicationReference"), "reference")
    if ref.startswith("#"):
        for contained in arr(order, "contained"):
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                return obj(contained, "code"), contained
    display = text(obj(order, "medicationReference"), "display")
    return ({"text": display} if display else {}), None


def ketamine_concept(concept: Mapping[str, Any], codesets: CodeSets | None = None) -> tuple[bool, bool]:
    """(names ketamine or esketamine, names esketamine) for a CodeableConcept: RxNorm, Spravato NDC, or the words."""
    codesets = codesets or CodeSets.load()
    names = [n for n in [text(concept, "text")] + [text(c, "display") for c in codings(concept)] if n]
    esketamine = found = False
    for coding in codings(concept):
        key, code = system_key(text(coding, "system")), text(coding, "code")
        if key == "RXNORM" and code in codesets.ketamine_rxcuis:
            found = True
            esketamine |= code in codesets.esketamine_rxcuis
        elif key == "NDC" and code.startswith(codesets.spravato_ndc_products):
            found, esketamine = True, True
    if any(codesets.names_ketamine(n) for n in names):
        found = True
        esketamine |= any(re.search(r"\b(esketamine|spravato)\b", n, re.I) for n in names)
    return found, esketamine


_MG_UNITS = ("mg", "milligram", "milligrams")


def quantity_mg(quantity: Mapping[str, Any]) -> float | None:
    """A dose Quantity in mg (``code`` or ``unit``), when finite and sane; else None (no unit conversion)."""
    value = quantity.get("value")
    unit = (text(quantity, "code") or text(quantity, "unit")).lower()
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 10_000 and unit in _MG_UNITS:
        return float(value)
    return None


def medication_concept(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The drug of a MedicationRequest or MedicationAdministration: its concept, a contained Medication's code, or a
    reference's display."""
    return _concept(resource)[0]


def ketamine_order(order: Mapping[str, Any], codesets: CodeSets | None = None) -> KetamineOrder | None:
    """The order as a :class:`KetamineOrder` when it is for ketamine or esketamine, else None."""
    if order.get("resourceType") != "MedicationRequest":
        return None
    codesets = codesets or CodeSets.load()
    concept, medication = _concept(order)
    names = [n for n in [text(concept, "text")] + [text(c, "display") for c in codings(concept)] if n]
    found, esketamine = ketamine_concept(concept, codesets)
    if not found:
        return None
    words = " ".join(names)
    if medication is not None:
        words += " " + text(obj(medication, "form"), "text")
        words += " " + " ".join(text(c, "display") for c in codings(obj(medication, "form")))
    for dosage in arr(order, "dosageInstruction"):
        route = obj(dosage, "route")
        words += " " + text(dosage, "text") + " " + text(dosage, "patientInstruction") + " " + text(route, "text")
        words += " " + " ".join(text(c, "display") for c in codings(route))
    words += " " + " ".join(text(n, "text") for n in arr(order, "note"))
    dose = next((obj(r, "doseQuantity") for d in arr(order, "dosageInstruction") for r in arr(d, "doseAndRate")
                 if obj(r, "doseQuantity")), {})
    dose_mg = quantity_mg(dose)
    return KetamineOrder(
        reference=f"MedicationRequest/{text(order, 'id')}",
        name=names[0] if names else "ketamine",
        esketamine=esketamine,
        compounded=bool(_COMPOUNDED.search(words)),
        oral=bool(_ORAL.search(words)) and not esketamine,
        sublingual=bool(_SUBLINGUAL.search(words)),
        at_home=bool(_AT_HOME.search(words)),
        dose_mg=dose_mg,
    )

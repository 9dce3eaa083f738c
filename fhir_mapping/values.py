"""What every reader of a patient's entries reads the same way: whether a code can be read, a status code, a
number and whether it can be a blood pressure, and the count of entries that could not be read at all."""

from __future__ import annotations

from typing import Any

from ._json import codings, obj, text
from .facts import ResourceType
from .loading import ResourcePool

# Blood pressures outside this range are recording errors (a unit mix-up, a typo), not readings: reported, not used.
_PLAUSIBLE_MMHG = (20.0, 350.0)


def readable_code(concept: Any) -> bool:
    """A CodeableConcept with something to read: a coding with a code, or a text."""
    return bool(text(concept, "text").strip()) or any(text(c, "code").strip() for c in codings(concept))


def count_unreadable(pool: ResourcePool, res: dict[str, Any], counts: dict[ResourceType, int] | None) -> None:
    # Only an entry that is not valid FHIR counts: a valid one without a code we know is simply not ours.
    if counts is not None and not pool.valid(res):
        rtype = ResourceType(res["resourceType"])
        counts[rtype] = counts.get(rtype, 0) + 1


def status_code(concept: Any) -> str:
    for coding in codings(concept):
        if text(coding, "code"):
            return text(coding, "code")
    return ""


def number_value(res: Any) -> float | None:
    """The number of an Observation or component (valueQuantity, valueInteger, valueDecimal), if finite and sane."""
    quantity = obj(res, "valueQuantity")
    value = quantity.get("value") if quantity else res.get("valueInteger") if isinstance(res, dict) else None
    if value is None and isinstance(res, dict):
        value = res.get("valueDecimal")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and abs(value) < 1e9:
        return float(value)
    return None


def plausible_mmhg(mmhg: float) -> bool:
    return _PLAUSIBLE_MMHG[0] <= mmhg <= _PLAUSIBLE_MMHG[1]


def first_code(res: dict[str, Any]) -> str:
    for c in (res.get("code") or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return ""


def subject_key(res: dict[str, Any]) -> str:
    return str((res.get("subject") or {}).get("reference") or "")

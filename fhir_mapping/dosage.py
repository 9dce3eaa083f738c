"""Daily dose in mg from a FHIR Dosage, a drug's strength, or free dosage text.

Pure functions over plain JSON. EHRs rarely give a dose in mg: "1 tablet twice daily" with the strength only in the
drug's name is the common case, and some send nothing but ``dosage.text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .facts import DoseSource

_MASS_TO_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001}
# Units that mean "one dose unit of the product", whose strength is in the product name.
_UNIT_WORDS = re.compile(
    r"^(\{?(tab|tabs|tablet|tablets|tbl|cap|caps|capsule|capsules|patch|patches|system|each|ea|unit|units)\}?|1)$",
    re.I,
)
_VOLUME_TO_ML = {"ml": 1.0, "l": 1000.0}

# HL7 v3 GTSAbbreviation timing codes, as doses per day.
_TIMING_CODES_PER_DAY = {
    "QD": 1.0, "AM": 1.0, "PM": 1.0, "HS": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0, "QOD": 0.5,
    "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "Q12H": 2.0, "WK": 1 / 7,
}
_PERIOD_UNIT_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}


@dataclass(frozen=True, slots=True)
class Strength:
    """Amount of one ingredient per dose unit: per tablet/capsule (``per="unit"``), per mL, or per hour (patch)."""

    mg: float
    per: str = "unit"


@dataclass(frozen=True, slots=True)
class DailyDose:
    mg: float | None
    source: DoseSource
    prn: bool = False
    frequency_assumed: bool = False


_NUM = r"(\d+(?:\.\d+)?)"


def strength_in_name(name: str, ingredient: str) -> Strength | None:
    """The strength of ``ingredient`` in an RxNorm-style name: 'sertraline 50 MG Oral Tablet',
    'amitriptyline hydrochloride 10 MG / perphenazine 2 MG …', 'doxepin 10 MG/ML …', 'selegiline 0.25 MG/HR …'."""
    pattern = re.compile(
        rf"\b{re.escape(ingredient)}(?:\s+[a-z]+)?\s+{_NUM}\s*(MG|MCG|G)\b(?:\s*/\s*(ML|HR|24\s*HR))?", re.I
    )
    m = pattern.search(name)
    if not m:
        return None
    mg = float(m.group(1)) * _MASS_TO_MG[m.group(2).lower()]
    per = (m.group(3) or "").upper().replace(" ", "")
    if per == "ML":
        return Strength(mg, "ml")
    if per == "HR":
        return Strength(mg * 24, "unit")  # a transdermal system delivers its hourly rate all day
    return Strength(mg, "unit")


def strength_from_medication(medication: dict[str, Any], ingredient_matches: Any) -> Strength | None:
    """Strength from a Medication resource's ``ingredient[].strength`` (numerator mg / denominator 1 unit)."""
    for ing in medication.get("ingredient") or []:
        concept = ing.get("itemCodeableConcept") or {}
        label = " ".join([concept.get("text") or ""] + [c.get("display") or "" for c in concept.get("coding") or []])
        if not ingredient_matches(label):
            continue
        ratio = ing.get("strength") or {}
        num, den = ratio.get("numerator") or {}, ratio.get("denominator") or {}
        factor = _MASS_TO_MG.get(_unit(num))
        if factor is None or num.get("value") is None:
            continue
        den_value = float(den.get("value") or 1)
        if den_value <= 0:
            continue
        mg = float(num["value"]) * factor / den_value
        return Strength(mg, "ml" if _unit(den) == "ml" else "unit")
    return None


def _unit(quantity: dict[str, Any]) -> str:
    return str(quantity.get("code") or quantity.get("unit") or "").strip().lower()


def doses_per_day(timing: dict[str, Any] | None) -> float | None:
    """How many doses a day a Timing means; None when it does not say."""
    if not timing:
        return None
    repeat = timing.get("repeat") or {}
    if repeat.get("period") is not None and repeat.get("periodUnit") in _PERIOD_UNIT_DAYS:
        period_days = float(repeat["period"]) * _PERIOD_UNIT_DAYS[repeat["periodUnit"]]
        if period_days > 0:
            return float(repeat.get("frequency") or 1) / period_days
    if repeat.get("frequency") is not None and repeat.get("period") is None:
        return None
    for coding in (timing.get("code") or {}).get("coding") or []:
        per_day = _TIMING_CODES_PER_DAY.get(str(coding.get("code") or "").upper())
        if per_day is not None:
            return per_day
    return None


def _is_prn(dosage: dict[str, Any]) -> bool:
    return bool(dosage.get("asNeededBoolean")) or dosage.get("asNeededCodeableConcept") is not None


def _dose_quantity(dosage: dict[str, Any]) -> dict[str, Any] | None:
    for dr in dosage.get("doseAndRate") or []:
        if dr.get("doseQuantity"):
            return dict(dr["doseQuantity"])
        if dr.get("doseRange") and (dr["doseRange"].get("low") or {}).get("value") is not None:
            # The low end: an adequacy rule must not credit a dose that may not have been given.
            return dict(dr["doseRange"]["low"])
    return None


def _mg_per_dose(quantity: dict[str, Any], strength: Strength | None) -> tuple[float | None, DoseSource]:
    value = quantity.get("value")
    if value is None:
        return None, DoseSource.NONE
    unit = _unit(quantity)
    if unit in _MASS_TO_MG:
        return float(value) * _MASS_TO_MG[unit], DoseSource.STRUCTURED
    if strength is not None:
        if strength.per == "ml" and unit in _VOLUME_TO_ML:
            return float(value) * _VOLUME_TO_ML[unit] * strength.mg, DoseSource.STRUCTURED_UNITS_X_STRENGTH
        if strength.per == "unit" and (_UNIT_WORDS.match(unit) or unit == ""):
            return float(value) * strength.mg, DoseSource.STRUCTURED_UNITS_X_STRENGTH
    return None, DoseSource.NONE


def daily_dose(dosages: list[dict[str, Any]], strength: Strength | None) -> DailyDose:
    """The daily dose of one record's dosage instructions (summed when several run together)."""
    if not dosages:
        return DailyDose(None, DoseSource.NONE)
    if all(_is_prn(d) for d in dosages):
        return DailyDose(None, DoseSource.NONE, prn=True)
    total = 0.0
    source = DoseSource.NONE
    assumed = False
    for dosage in dosages:
        if _is_prn(dosage):
            continue
        quantity = _dose_quantity(dosage)
        per_day = doses_per_day(dosage.get("timing"))
        mg: float | None = None
        source_here = DoseSource.NONE
        if quantity is not None:
            mg, source_here = _mg_per_dose(quantity, strength)
            if mg is not None and per_day is None:
                per_day = _text_frequency(dosage.get("text") or "")
                if per_day is None:
                    # Most antidepressants are taken once daily; a structured dose with no timing is read so.
                    per_day, assumed = 1.0, True
        if mg is None:
            parsed = parse_dosage_text(dosage.get("text") or "", strength)
            if parsed.prn:
                continue
            if parsed.mg is None:
                continue
            total += parsed.mg
            source = DoseSource.TEXT
            continue
        total += mg * (per_day or 0.0)
        source = source_here
    if source is DoseSource.NONE:
        return DailyDose(None, DoseSource.NONE)
    return DailyDose(round(total, 6), source, frequency_assumed=assumed)


_FREQ_PATTERNS: list[tuple[re.Pattern[str], float | None]] = [
    (re.compile(r"\bevery other day\b|\bqod\b", re.I), 0.5),
    (re.compile(r"\b(four times|4 times)\b|\bqid\b", re.I), 4.0),
    (re.compile(r"\b(three times|3 times|thrice)\b|\btid\b", re.I), 3.0),
    (re.compile(r"\b(twice|two times|2 times)\b|\bbid\b|\bb\.i\.d\b", re.I), 2.0),
    (re.compile(r"\bevery\s+(\d+)\s*(hours|hrs|h)\b|\bq(\d+)h\b", re.I), None),
    (re.compile(r"\b(once|one time|1 time)\b|\bdaily\b|\bevery (day|morning|evening|night)\b|\bqd\b|"
                r"\b(at bedtime|nightly|each morning|in the morning|qhs|qam|qpm)\b|\ba day\b|\bper day\b", re.I), 1.0),
]
_PRN_TEXT = re.compile(r"\b(as needed|prn|p\.r\.n\.?|if needed)\b", re.I)
_MASS_TEXT = re.compile(rf"{_NUM}\s*(mg|mcg|g)\b", re.I)
_UNITS_TEXT = re.compile(
    rf"\b{_NUM}\s*(tablet|tablets|tab|tabs|capsule|capsules|cap|caps|patch|patches)\b|"
    r"\b(one|two|three|four)\s+(tablet|tablets|tab|capsule|capsules|cap|patch)\b",
    re.I,
)
_WORD_NUMBERS = {"one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0}


def _text_frequency(text: str) -> float | None:
    for pattern, per_day in _FREQ_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        if per_day is not None:
            return per_day
        hours = float(m.group(1) or m.group(3))
        return 24.0 / hours if hours > 0 else None
    return None


def parse_dosage_text(text: str, strength: Strength | None) -> DailyDose:
    """Daily mg from free text such as 'Take 150 mg by mouth once daily' or '1 tablet twice a day'."""
    if not text.strip():
        return DailyDose(None, DoseSource.NONE)
    if _PRN_TEXT.search(text):
        return DailyDose(None, DoseSource.NONE, prn=True)
    per_day = _text_frequency(text)
    if per_day is None:
        return DailyDose(None, DoseSource.NONE)
    mass = _MASS_TEXT.search(text)
    if mass:
        mg = float(mass.group(1)) * _MASS_TO_MG[mass.group(2).lower()]
        return DailyDose(round(mg * per_day, 6), DoseSource.TEXT)
    units = _UNITS_TEXT.search(text)
    if units and strength is not None and strength.per == "unit":
        count = float(units.group(1)) if units.group(1) else _WORD_NUMBERS[units.group(3).lower()]
        return DailyDose(round(count * strength.mg * per_day, 6), DoseSource.TEXT)
    return DailyDose(None, DoseSource.NONE)

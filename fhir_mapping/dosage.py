"""Daily dose in mg from a FHIR Dosage, a drug's strength, or free dosage text.

Pure functions over plain JSON. EHRs rarely give a dose in mg: "1 tablet twice daily" with the strength only in the
drug's name is the common case, and some send nothing but ``dosage.text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import sig
from ._json import arr, obj
from .dates import duration_days, parse_day
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


def strength_in_name(name: str, ingredient: str, aliases: tuple[str, ...] = ()) -> Strength | None:
    """The strength of ``ingredient`` (or one of its brand ``aliases``) in a drug name as RxNorm or an EHR writes it:
    'sertraline 50 MG Oral Tablet', 'sertraline (ZOLOFT) 100 MG tablet', 'buPROPion XL 300 mg 24 hr tablet',
    'escitalopram oxalate 10 MG Oral Tablet', 'Zoloft 100 MG Oral Tablet', 'doxepin 10 MG/ML …',
    'fluoxetine 20 MG/5 ML …', 'selegiline 0.25 MG/HR …'. Between the name and the strength may stand up to four
    words without digits (salt, ER/XL/SR, a brand in parentheses or brackets)."""
    names = "|".join(re.escape(n) for n in (ingredient, *aliases) if n)
    pattern = re.compile(
        rf"\b(?:{names})(?:\s+(?:\([^()\d]*\)|\[[^\[\]\d]*\]|[a-z][a-z.\-]*)){{0,4}}\s*[,:]?\s+{_NUM}\s*"
        rf"(MG|MCG|G)\b(?:\s*/\s*(?:{_NUM}\s*)?(ML|HR))?",
        re.I,
    )
    m = pattern.search(name)
    if not m:
        return None
    mg = float(m.group(1)) * _MASS_TO_MG[m.group(2).lower()]
    per = (m.group(4) or "").upper()
    amount = float(m.group(3)) if m.group(3) else 1.0
    if amount <= 0:
        return None
    if per == "ML":
        return Strength(mg / amount, "ml")
    if per == "HR":
        # A transdermal system delivers its rate all day: "0.25 MG/HR" is 6 mg a day, "6 MG/24 HR" 6 mg.
        return Strength(mg * 24 / amount)
    return Strength(mg)


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
        den_value = float(den["value"]) if den.get("value") is not None else 1.0
        if den_value <= 0:
            continue
        mg = float(num["value"]) * factor / den_value
        return Strength(mg, "ml" if _unit(den) == "ml" else "unit")
    return None


def _unit(quantity: dict[str, Any]) -> str:
    return str(quantity.get("code") or quantity.get("unit") or "").strip().lower()


def doses_per_day(timing: dict[str, Any] | None) -> float | None:
    """How many doses a day a Timing means; None when it does not say.

    ``repeat.frequency`` per ``period``; else the times of day it lists (``when``: MORN, HS …; ``timeOfDay``), each
    one administration; else the HL7 timing abbreviation in ``code``.
    """
    if not isinstance(timing, dict) or not timing:
        return None
    repeat = obj(timing, "repeat")
    period_days = _period_days(repeat)
    frequency = _positive(repeat.get("frequency"))
    if period_days is not None and (frequency is not None or repeat.get("frequency") is None):
        events = _events_per_period(repeat)
        count = frequency if frequency is not None else (events or 1.0)
        return count / period_days
    if frequency is not None and period_days is None:
        return None  # "3 times" per what?
    events = _events_per_period(repeat)
    if events:
        return events  # listed times of day with no period: each day
    for coding in (timing.get("code") or {}).get("coding") or [] if isinstance(timing.get("code"), dict) else []:
        per_day = _TIMING_CODES_PER_DAY.get(str(coding.get("code") or "").upper()) if isinstance(coding, dict) else None
        if per_day is not None:
            return per_day
    return None


def supply_days(quantity: Any, dosages: list[Any]) -> float | None:
    """How many days a dispensed quantity lasts at the prescribed rate: ``dispenseRequest.quantity`` ("the amount
    that is to be dispensed for one fill", FHIR R4) divided by the amount a day the instructions take, in the same
    unit. Oracle Health orders say their supply so ("650 mg = 2 cap, Oral, every 4 hr … 90 cap", with no
    ``expectedSupplyDuration``: fhir.cerner.com Millennium R4 MedicationRequest examples, issue #20).

    None unless it is plain: one scheduled dosage (not as needed) with a dose quantity in the quantity's unit and a
    frequency the timing or the sig states. A tablet count is never read against a mass, nor a guess at the
    frequency used: a supply that may be too long could credit a trial that was not taken.
    """
    if not isinstance(quantity, dict):
        return None
    amount = _positive(quantity.get("value"))
    scheduled = [d for d in dosages if isinstance(d, dict)]
    if amount is None or len(scheduled) != 1:
        return None
    dosage = scheduled[0]
    if _is_prn(dosage) or sig.is_prn(_instruction_text(dosage)):
        return None
    dose = _dose_quantity(dosage)
    per_dose = None if dose is None else _positive(dose.get("value"))
    if dose is None or per_dose is None or not _same_unit(_unit(dose), _unit(quantity)):
        return None
    per_day = doses_per_day(dosage.get("timing"))
    if per_day is None:
        per_day = sig.frequency(_instruction_text(dosage)).per_day
    if per_day is None or per_day <= 0:
        return None
    return amount / (per_dose * per_day)


def _same_unit(a: str, b: str) -> bool:
    """The same unit, however written: UCUM annotations ("{Capsule}") and the words for one tablet or capsule."""
    def one(unit: str) -> str:
        unit = unit.strip("{} ").lower()
        return _UNIT_STEMS.get(unit, unit)
    return bool(a) and one(a) == one(b)


_UNIT_STEMS = {**dict.fromkeys(("tab", "tabs", "tablet", "tablets", "tbl"), "tab"),
               **dict.fromkeys(("cap", "caps", "capsule", "capsules"), "cap")}


def _positive(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 and value == value:
        return float(value)
    return None


def _period_days(repeat: dict[str, Any]) -> float | None:
    period = _positive(repeat.get("period"))
    unit = repeat.get("periodUnit")
    if period is None or unit not in _PERIOD_UNIT_DAYS:
        return None
    return period * _PERIOD_UNIT_DAYS[unit]


def _events_per_period(repeat: dict[str, Any]) -> float:
    when = arr(repeat, "when")
    times = arr(repeat, "timeOfDay")
    return float(len(set(map(str, when))) + len(set(map(str, times))))


def _bounds_days(timing: dict[str, Any] | None) -> float | None:
    """How long one step of a tapering schedule lasts (``repeat.boundsDuration`` or ``boundsPeriod``)."""
    if not isinstance(timing, dict):
        return None
    repeat = obj(timing, "repeat")
    duration = repeat.get("boundsDuration")
    if isinstance(duration, dict):
        return duration_days(duration)
    period = repeat.get("boundsPeriod")
    if isinstance(period, dict):
        start, end = parse_day(period.get("start")), parse_day(period.get("end"))
        if start is not None and end is not None and end >= start:
            return float((end - start).days)
    return None


def _is_prn(dosage: dict[str, Any]) -> bool:
    return bool(dosage.get("asNeededBoolean")) or dosage.get("asNeededCodeableConcept") is not None


def _dose_quantity(dosage: dict[str, Any]) -> dict[str, Any] | None:
    for dr in dosage.get("doseAndRate") or []:
        if not isinstance(dr, dict):
            continue
        if isinstance(dr.get("doseQuantity"), dict):
            return dict(dr["doseQuantity"])
        low = dr["doseRange"].get("low") if isinstance(dr.get("doseRange"), dict) else None
        if isinstance(low, dict) and low.get("value") is not None:
            # The low end: an adequacy rule must not credit a dose that may not have been given.
            return dict(low)
    return None


def _mg_per_dose(quantity: dict[str, Any], strength: Strength | None) -> tuple[float | None, DoseSource]:
    value = _positive(quantity.get("value"))
    if value is None:
        return None, DoseSource.NONE
    unit = _unit(quantity)
    if unit in _MASS_TO_MG:
        return value * _MASS_TO_MG[unit], DoseSource.STRUCTURED
    if strength is not None:
        if strength.per == "ml" and unit in _VOLUME_TO_ML:
            return value * _VOLUME_TO_ML[unit] * strength.mg, DoseSource.STRUCTURED_UNITS_X_STRENGTH
        if strength.per == "unit" and (_UNIT_WORDS.match(unit) or unit == ""):
            return value * strength.mg, DoseSource.STRUCTURED_UNITS_X_STRENGTH
    return None, DoseSource.NONE


def _instruction_text(dosage: dict[str, Any]) -> str:
    parts = [dosage.get("text"), dosage.get("patientInstruction")]
    return " ".join(p for p in parts if isinstance(p, str))


@dataclass(frozen=True, slots=True)
class DosePhase:
    """One step of a record's schedule: a daily dose for ``days`` (None: until the record ends)."""

    dose: DailyDose
    days: float | None


def dose_phases(dosages: list[Any], strength: Strength | None) -> list[DosePhase]:
    """The daily dose of one record, step by step.

    Dosage entries with the same ``sequence`` (or none) run together and add up; different sequences follow one
    another (a taper), each for its ``boundsDuration``/``boundsPeriod``. A taper whose steps have no length is read
    at its lowest step: an adequacy rule never credits a dose that may not have been given.
    """
    valid = [d for d in dosages if isinstance(d, dict)]
    sequences = sorted({int(d["sequence"]) for d in valid if isinstance(d.get("sequence"), int)})
    if len(sequences) <= 1:
        text_steps = _text_phases(valid, strength)
        if text_steps is not None:
            return text_steps
        return [DosePhase(daily_dose(valid, strength), None)]
    steps = []
    for seq in sequences:
        group = [d for d in valid if d.get("sequence") == seq]
        steps.append(DosePhase(daily_dose(group, strength), _bounds_days(group[0].get("timing"))))
    if any(step.days is None for step in steps[:-1]):
        return [_lowest(steps)]
    return [*steps[:-1], DosePhase(steps[-1].dose, None)]


def _text_phases(dosages: list[dict[str, Any]], strength: Strength | None) -> list[DosePhase] | None:
    """A single text-only dosage whose sig is a taper ("… for 7 days, then …")."""
    if len(dosages) != 1 or _dose_quantity(dosages[0]) is not None or dosages[0].get("timing"):
        return None
    steps = sig.phases(_instruction_text(dosages[0]))
    if len(steps) < 2:
        return None
    parsed = []
    for step in steps:
        days = re.search(r"\bfor\s*(\d+)\s*(days?|weeks?)\b", step)
        length = None if days is None else float(days.group(1)) * (7 if days.group(2).startswith("week") else 1)
        parsed.append(DosePhase(parse_dosage_text(step, strength), length))
    if any(p.days is None for p in parsed[:-1]):
        return [_lowest(parsed)]
    return [*parsed[:-1], DosePhase(parsed[-1].dose, None)]


def _lowest(steps: list[DosePhase]) -> DosePhase:
    known = [s for s in steps if s.dose.mg is not None]
    if len(known) < len(steps) or not known:
        return DosePhase(DailyDose(None, DoseSource.NONE), None)
    return DosePhase(min((s.dose for s in known), key=lambda d: d.mg or 0.0), None)


def daily_dose(dosages: list[Any], strength: Strength | None) -> DailyDose:
    """The daily dose of dosage instructions that run together (summed), or unknown (``mg`` None)."""
    dosages = [d for d in dosages if isinstance(d, dict)]
    if not dosages:
        return DailyDose(None, DoseSource.NONE)
    if all(_is_prn(d) or sig.is_prn(_instruction_text(d)) for d in dosages):
        return DailyDose(None, DoseSource.NONE, prn=True)
    total = 0.0
    source = DoseSource.NONE
    assumed = False
    for dosage in dosages:
        if _is_prn(dosage):
            continue
        text = _instruction_text(dosage)
        quantity = _dose_quantity(dosage)
        per_day = doses_per_day(dosage.get("timing"))
        if quantity is None:
            parsed = parse_dosage_text(text, strength)
            if parsed.prn:
                continue
            if parsed.mg is None:
                # A scheduled dosage we cannot read: the record's dose is unknown, never a partial sum.
                return DailyDose(None, DoseSource.NONE)
            total += parsed.mg
            source = DoseSource.TEXT
            continue
        mg, source_here = _mg_per_dose(quantity, strength)
        if mg is None:
            return DailyDose(None, DoseSource.NONE)
        if per_day is None:
            said = sig.frequency(text)
            if said.per_day is not None:
                per_day = said.per_day
            elif said.stated:
                return DailyDose(None, DoseSource.NONE)  # a frequency is named that we cannot read
            else:
                # Most antidepressants are taken once daily; a structured dose with no timing and no word of
                # frequency is read so, and flagged.
                per_day, assumed = 1.0, True
        total += mg * per_day
        source = source_here
    if source is DoseSource.NONE:
        return DailyDose(None, DoseSource.NONE)
    return DailyDose(round(total, 6), source, frequency_assumed=assumed)


def parse_dosage_text(text: str, strength: Strength | None) -> DailyDose:
    """Daily mg from free text such as 'Take 150 mg by mouth once daily' or '1 tablet twice a day'."""
    if not text.strip():
        return DailyDose(None, DoseSource.NONE)
    if sig.is_prn(text):
        return DailyDose(None, DoseSource.NONE, prn=True)
    per_day = sig.frequency(text).per_day
    amount = sig.dose(text)
    if per_day is None or amount is None:
        return DailyDose(None, DoseSource.NONE)
    if amount.mg is not None:
        return DailyDose(round(amount.mg * per_day, 6), DoseSource.TEXT)
    if amount.units is not None and strength is not None and strength.per == "unit":
        return DailyDose(round(amount.units * strength.mg * per_day, 6), DoseSource.TEXT)
    if amount.ml is not None and strength is not None and strength.per == "ml":
        return DailyDose(round(amount.ml * strength.mg * per_day, 6), DoseSource.TEXT)
    return DailyDose(None, DoseSource.NONE)

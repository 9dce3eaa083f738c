"""Daily dose in mg: structured doses, dose units times strength, timing, and free text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_mapping.dosage import Strength, daily_dose, doses_per_day, parse_dosage_text, strength_in_name


def dose(value: float, unit: str, *, frequency: int | None = 1, period: float = 1, period_unit: str = "d",
         code: str | None = None, prn: bool = False, text: str | None = None) -> dict:  # type: ignore[type-arg]
    d: dict = {"doseAndRate": [{"doseQuantity": {"value": value, "unit": unit}}]}  # type: ignore[type-arg]
    if code:
        d["timing"] = {"code": {"coding": [{"code": code}]}}
    elif frequency is not None:
        d["timing"] = {"repeat": {"frequency": frequency, "period": period, "periodUnit": period_unit}}
    if prn:
        d["asNeededBoolean"] = True
    if text:
        d["text"] = text
    return d


@pytest.mark.parametrize("name,ingredient,mg,per", [
    ("sertraline 50 MG Oral Tablet", "sertraline", 50, "unit"),
    ("amitriptyline hydrochloride 10 MG / perphenazine 2 MG Oral Tablet", "amitriptyline", 10, "unit"),
    ("fluoxetine 25 MG / olanzapine 6 MG Oral Capsule", "fluoxetine", 25, "unit"),
    ("24 HR venlafaxine 37.5 MG Extended Release Oral Capsule", "venlafaxine", 37.5, "unit"),
    ("doxepin 10 MG/ML Oral Solution", "doxepin", 10, "ml"),
    ("24 HR selegiline 0.25 MG/HR Transdermal System", "selegiline", 6, "unit"),
])
def test_strength_from_rxnorm_names(name: str, ingredient: str, mg: float, per: str) -> None:
    assert strength_in_name(name, ingredient) == Strength(mg, per)


def test_no_strength_for_an_ingredient_not_in_the_name() -> None:
    assert strength_in_name("olanzapine 5 MG Oral Tablet", "fluoxetine") is None


@pytest.mark.parametrize("dosage,strength,expected", [
    (dose(100, "mg"), None, 100),
    (dose(0.1, "g"), None, 100),
    (dose(50000, "mcg", frequency=2), None, 100),
    (dose(1, "tablet", code="BID"), Strength(75), 150),
    (dose(2, "{tbl}", code="QD"), Strength(50), 100),
    (dose(5, "mL", frequency=1), Strength(10, "ml"), 50),
    (dose(1, "TAB", frequency=1, period=12, period_unit="h"), Strength(50), 100),
    (dose(20, "mg", frequency=1, period=2, period_unit="d"), None, 10),
])
def test_structured_doses(dosage: dict, strength: Strength | None, expected: float) -> None:  # type: ignore[type-arg]
    assert daily_dose([dosage], strength).mg == expected


def test_tablets_without_a_known_strength_give_no_dose() -> None:
    assert daily_dose([dose(1, "tablet", code="QD")], None).mg is None


def test_prn_doses_do_not_count() -> None:
    result = daily_dose([dose(50, "mg", prn=True)], None)
    assert result.mg is None and result.prn
    assert parse_dosage_text("Take 50 mg by mouth as needed for sleep", None).mg is None


def test_a_structured_dose_without_timing_is_read_once_daily_and_flagged() -> None:
    result = daily_dose([dose(150, "mg", frequency=None)], None)
    assert result.mg == 150 and result.frequency_assumed


def test_text_frequency_completes_a_structured_dose_without_timing() -> None:
    assert daily_dose([dose(50, "mg", frequency=None, text="twice daily")], None).mg == 100


@pytest.mark.parametrize("text,strength,expected", [
    ("Take 150 mg by mouth once daily", None, 150),
    ("50 mg twice a day", None, 100),
    ("25 mg three times daily", None, 75),
    ("Take 1 tablet (20 mg) every morning", None, 20),
    ("1 tablet every 12 hours", Strength(50), 100),
    ("Take two tablets at bedtime", Strength(25), 50),
    ("10 mg every other day", None, 5),
    ("Take as directed", None, None),
    ("100 mg", None, None),
])
def test_dosage_text(text: str, strength: Strength | None, expected: float | None) -> None:
    assert parse_dosage_text(text, strength).mg == expected


@pytest.mark.parametrize("code,per_day", [("QD", 1), ("BID", 2), ("TID", 3), ("QID", 4), ("Q8H", 3), ("QOD", 0.5)])
def test_timing_codes(code: str, per_day: float) -> None:
    assert doses_per_day({"code": {"coding": [{"code": code}]}}) == per_day


@given(value=st.floats(min_value=0.1, max_value=1000, allow_nan=False),
       frequency=st.integers(min_value=1, max_value=6),
       period=st.sampled_from([(1, "d"), (12, "h"), (8, "h"), (1, "wk"), (2, "d")]))
def test_property_structured_dose_is_value_times_doses_per_day(value: float, frequency: int,
                                                               period: tuple[int, str]) -> None:
    per_day = frequency / {"d": period[0], "h": period[0] / 24, "wk": period[0] * 7}[period[1]]
    result = daily_dose([dose(value, "mg", frequency=frequency, period=period[0], period_unit=period[1])], None)
    assert result.mg == pytest.approx(value * per_day, rel=1e-3)


@given(count=st.integers(min_value=1, max_value=4), strength=st.sampled_from([10, 20, 25, 37.5, 50, 75, 150]),
       unit=st.sampled_from(["mg", "MG", "mcg"]))
def test_property_text_dose_scales_with_units(count: int, strength: float, unit: str) -> None:
    text = f"Take {strength:g} {unit} by mouth {['once', 'twice', 'three times', 'four times'][count - 1]} daily"
    expected = strength * count * (0.001 if unit == "mcg" else 1)
    assert parse_dosage_text(text, None).mg == pytest.approx(expected, rel=1e-3)


@given(st.text(max_size=80))
def test_property_any_text_parses_without_error(text: str) -> None:
    result = parse_dosage_text(text, Strength(50))
    assert result.mg is None or result.mg >= 0

"""Daily dose in mg: structured doses, dose units times strength, timing, and free text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_mapping import DoseSource
from fhir_mapping.dosage import DailyDose, Strength, daily_dose, doses_per_day, parse_dosage_text, strength_in_name


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


# Every HL7 v3 GTSAbbreviation code the parser reads, as its definition says (FHIR value set timing-abbreviation):
# once a day (QD; AM, PM and HS say when the one dose is taken), 2, 3 and 4 times a day, every other day, every 4,
# 6, 8 and 12 hours, once a week. A code changed to another count would misjudge every trial dosed by it.
@pytest.mark.parametrize("code,per_day", [
    ("QD", 1), ("AM", 1), ("PM", 1), ("HS", 1), ("BID", 2), ("TID", 3), ("QID", 4), ("QOD", 1 / 2),
    ("Q4H", 24 / 4), ("Q6H", 24 / 6), ("Q8H", 24 / 8), ("Q12H", 24 / 12), ("WK", 1 / 7),
])
def test_timing_codes(code: str, per_day: float) -> None:
    assert doses_per_day({"code": {"coding": [{"code": code}]}}) == per_day
    gts = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
    assert doses_per_day({"code": {"coding": [{"system": gts, "code": code.lower()}]}}) == per_day  # any case


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


# -- Strength, sources and schedules, pinned exactly (the mutation score of this module depends on them) --------

from fhir_mapping.dosage import dose_phases, strength_from_medication  # noqa: E402


@pytest.mark.parametrize("name,mg,per", [
    ("sertraline 500 MCG tablet", 0.5, "unit"),
    ("sertraline 1 G tablet", 1000, "unit"),
    ("sertraline 20 MG/ML oral concentrate", 20, "ml"),
    ("sertraline 100 MG / 5 ML solution", 20, "ml"),
    ("selegiline 0.25 MG/HR transdermal", 6, "unit"),
    ("selegiline 6 MG/24 HR transdermal", 6, "unit"),
    ("selegiline 6 MG/24HR transdermal", 6, "unit"),
    ("selegiline 3 MG/12 HR transdermal", 6, "unit"),
    ("sertraline 50 mg", 50, "unit"),
])
def test_strength_units_and_denominators(name: str, mg: float, per: str) -> None:
    ingredient = name.split()[0]
    assert strength_in_name(name, ingredient) == Strength(pytest.approx(mg), per)  # type: ignore[arg-type]


def test_a_zero_volume_denominator_gives_no_strength() -> None:
    assert strength_in_name("sertraline 100 MG / 0 ML solution", "sertraline") is None


def _medication(*ingredients: dict) -> dict:  # type: ignore[type-arg]
    return {"resourceType": "Medication", "ingredient": list(ingredients)}


def _ingredient(label: str, value: float | None, unit: str, per: float | None = 1, per_unit: str = "TAB") -> dict:  # type: ignore[type-arg]
    ratio: dict = {"numerator": {"value": value, "unit": unit}}  # type: ignore[type-arg]
    if per is not None:
        ratio["denominator"] = {"value": per, "unit": per_unit}
    return {"itemCodeableConcept": {"text": label, "coding": [{"display": label}]}, "strength": ratio}


def test_strength_from_a_medication_resource() -> None:
    def matches(label: str) -> bool:
        return "sertraline" in label

    med = _medication(_ingredient("lactose", 5, "mg"), _ingredient("sertraline", 100, "mg"))
    assert strength_from_medication(med, matches) == Strength(100, "unit")
    assert strength_from_medication(_medication(_ingredient("sertraline", 500, "mcg")), matches) == Strength(0.5)
    assert strength_from_medication(_medication(_ingredient("sertraline", 100, "mg", 5, "mL")), matches) == \
        Strength(20, "ml")
    assert strength_from_medication(_medication(_ingredient("sertraline", 100, "mg", None)), matches) == \
        Strength(100)
    assert strength_from_medication(_medication(_ingredient("sertraline", 100, "mg", 0)), matches) is None
    assert strength_from_medication(_medication(_ingredient("sertraline", None, "mg")), matches) is None
    assert strength_from_medication(_medication(_ingredient("sertraline", 100, "tablet")), matches) is None
    assert strength_from_medication(_medication(_ingredient("lactose", 100, "mg")), matches) is None
    assert strength_from_medication({"resourceType": "Medication"}, matches) is None
    coded = {"itemCodeableConcept": {"coding": [{"display": "sertraline hydrochloride"}]},
             "strength": {"numerator": {"value": 50, "code": "mg"}, "denominator": {"value": 1}}}
    assert strength_from_medication(_medication(coded), matches) == Strength(50)


@pytest.mark.parametrize("dosage,source,mg", [
    (dose(50, "mg"), DoseSource.STRUCTURED, 50),
    (dose(1, "tablet"), DoseSource.STRUCTURED_UNITS_X_STRENGTH, 100),
    (dose(5, "mL"), DoseSource.NONE, None),  # mL of a drug whose strength is per tablet: unknown
    ({"text": "take 1 tablet daily"}, DoseSource.TEXT, 100),
    ({"text": "take as directed"}, DoseSource.NONE, None),
    ({}, DoseSource.NONE, None),
])
def test_where_the_dose_came_from(dosage: dict, source: DoseSource, mg: float | None) -> None:  # type: ignore[type-arg]
    result = daily_dose([dosage], Strength(100))
    assert (result.source, result.mg, result.prn, result.frequency_assumed) == (source, mg, False, False)
    assert parse_dosage_text("take as directed", None).source is DoseSource.NONE


def test_text_doses_report_their_source_and_prn() -> None:
    assert parse_dosage_text("150 mg daily", None) == parse_dosage_text("150 mg once daily", None)
    assert parse_dosage_text("150 mg daily", None).source is DoseSource.TEXT
    prn = parse_dosage_text("1 tab daily as needed", Strength(10))
    assert prn.prn and prn.mg is None and prn.source is DoseSource.NONE
    assert parse_dosage_text("", Strength(10)).source is DoseSource.NONE and not parse_dosage_text("", None).prn
    assert parse_dosage_text("5 mL daily", Strength(4, "ml")).mg == 20
    assert parse_dosage_text("5 mL daily", Strength(4, "unit")).mg is None
    assert parse_dosage_text("2 tablets daily", Strength(4, "ml")).mg is None
    assert parse_dosage_text("0.3333333333 mg daily", None).mg == 0.333333


def test_prn_everywhere_is_prn_and_a_scheduled_dose_beside_a_prn_one_counts() -> None:
    assert daily_dose([dose(50, "mg", prn=True), {"text": "1 tab q6h prn", "asNeededBoolean": False}],
                      Strength(50)).prn
    mixed = daily_dose([dose(50, "mg"), dose(25, "mg", prn=True)], None)
    assert mixed.mg == 50 and not mixed.prn
    assert daily_dose([{"asNeededCodeableConcept": {"text": "anxiety"}, **dose(25, "mg")}], None).prn
    assert not daily_dose([{**dose(25, "mg"), "asNeededBoolean": False}], None).prn


@pytest.mark.parametrize("timing,per_day", [
    ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, 2),
    ({"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}}, 2),
    ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, 1 / 7),
    ({"repeat": {"period": 1, "periodUnit": "d", "when": ["MORN", "HS"]}}, 2),
    ({"repeat": {"period": 2, "periodUnit": "d"}}, 0.5),
    ({"repeat": {"frequency": 3}}, None),
    ({"repeat": {"when": ["MORN", "MORN"]}}, 1),
    ({"repeat": {"frequency": 1, "period": 0, "periodUnit": "d"}}, None),
    ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "fortnight"}}, None),
    ({"repeat": {"frequency": True, "period": 1, "periodUnit": "d"}}, None),  # a boolean is no frequency
    ({"code": {"coding": [{"code": "bid"}]}}, 2),
    ({"code": {"coding": ["BID", {"code": "TID"}]}}, 3),
    ({}, None),
    (None, None),
    ("BID", None),
])
def test_timing(timing: object, per_day: float | None) -> None:
    result = doses_per_day(timing)  # type: ignore[arg-type]
    assert result == (pytest.approx(per_day) if per_day is not None else None)


def _step(seq: int, mg: float, **bounds: object) -> dict:  # type: ignore[type-arg]
    repeat: dict = {"frequency": 1, "period": 1, "periodUnit": "d", **bounds}  # type: ignore[type-arg]
    return {"sequence": seq, "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}],
            "timing": {"repeat": repeat}}


def test_taper_steps_by_bounds_period_and_duration() -> None:
    by_period = dose_phases([_step(1, 25, boundsPeriod={"start": "2026-01-01", "end": "2026-01-15"}),
                             _step(2, 50)], None)
    assert [(p.dose.mg, p.days) for p in by_period] == [(25, 14), (50, None)]
    by_weeks = dose_phases([_step(1, 25, boundsDuration={"value": 2, "unit": "wk", "code": "wk"}), _step(2, 50)],
                           None)
    assert [(p.dose.mg, p.days) for p in by_weeks] == [(25, 14), (50, None)]
    backwards = dose_phases([_step(1, 25, boundsPeriod={"start": "2026-01-15", "end": "2026-01-01"}),
                             _step(2, 50)], None)
    assert [(p.dose.mg, p.days) for p in backwards] == [(25, None)]  # no usable length: the lowest step
    unknown_step = dose_phases([_step(1, 25, boundsDuration={"value": 7, "code": "d"}),
                                {"sequence": 2, "text": "as directed"}], None)
    assert [(p.dose.mg, p.days) for p in unknown_step] == [(25, 7), (None, None)]
    lowest_unknown = dose_phases([_step(1, 25), {"sequence": 2, "text": "as directed"}], None)
    assert [(p.dose.mg, p.days) for p in lowest_unknown] == [(None, None)]
    assert [(p.dose.mg, p.days) for p in dose_phases([_step(1, 25), _step(1, 50)], None)] == [(75, None)]


def test_text_tapers_in_weeks_and_without_lengths() -> None:
    weeks = dose_phases([{"text": "1 tablet daily for 2 weeks then 2 tablets daily"}], Strength(50))
    assert [(p.dose.mg, p.days) for p in weeks] == [(50, 14), (100, None)]
    no_length = dose_phases([{"text": "1 tablet daily, then 2 tablets daily"}], Strength(50))
    assert [(p.dose.mg, p.days) for p in no_length] == [(50, None)]
    structured = dose_phases([{**dose(1, "tablet"), "text": "1 tab daily for 7 days then 2 tabs"}], Strength(50))
    assert [(p.dose.mg, p.days) for p in structured] == [(50, None)]  # a structured dose is not re-read from text
    with_timing = dose_phases([{"text": "1 tab daily for 7 days then 2 tabs daily",
                                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
                              Strength(50))
    assert len(with_timing) == 1
    patient_text = dose_phases([{"patientInstruction": "Take 1 tablet twice daily"}], Strength(50))
    assert [(p.dose.mg, p.days) for p in patient_text] == [(100, None)]


@given(st.text(max_size=80), st.floats(0.01, 1000))
def test_an_unknown_dose_has_no_source_and_a_known_text_dose_says_text(text: str, mg: float) -> None:
    for strength in (Strength(mg), Strength(mg, "ml"), None):
        result = parse_dosage_text(text, strength)
        assert (result.source is DoseSource.NONE) if result.mg is None else (result.source is DoseSource.TEXT)
        combined = daily_dose([{"text": text}, dose(1, "mg", text=text)], strength)
        assert combined.mg is None or combined.source is not DoseSource.NONE
        if combined.mg is None:
            assert combined.source is DoseSource.NONE


def test_unknown_doses_from_every_path_have_no_source() -> None:
    for dosages in ([], [{"text": "take as directed"}], [dose(1, "tablet", frequency=None, text="with meals")],
                    [dose(1, "tablet")], [{"text": "1 tab daily prn"}]):
        result = daily_dose(dosages, None)
        assert result.mg is None and result.source is DoseSource.NONE


def test_doses_keep_six_decimals() -> None:
    assert parse_dosage_text("1 tablet daily", Strength(0.12345675)).mg == 0.123457
    assert parse_dosage_text("1 mL daily", Strength(0.12345675, "ml")).mg == 0.123457
    assert parse_dosage_text("0.12345675 mg daily", None).mg == 0.123457
    assert daily_dose([dose(0.12345675, "mg")], None).mg == 0.123457
    assert parse_dosage_text("5 mL twice daily", Strength(4, "ml")).mg == 40
    assert parse_dosage_text("5 mL twice daily", Strength(4, "ml")).source is DoseSource.TEXT
    assert parse_dosage_text("2 tablets twice daily", Strength(25)).source is DoseSource.TEXT
    litres = {"doseAndRate": [{"doseQuantity": {"value": 0.005, "unit": "L"}}],
              "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    assert daily_dose([litres], Strength(4, "ml")).mg == 20


def test_concurrent_text_dosages_add_up() -> None:
    assert daily_dose([{"text": "50 mg every morning"}, {"text": "100 mg at bedtime"}], None).mg == 150
    assert daily_dose([{"text": "1 tab prn"}, {"text": "100 mg at bedtime"}], None).mg == 100


def test_three_step_tapers() -> None:
    steps = dose_phases([_step(1, 25, boundsDuration={"value": 7, "code": "d"}),
                         _step(2, 50, boundsDuration={"value": 7, "code": "d"}), _step(3, 100)], None)
    assert [(p.dose.mg, p.days) for p in steps] == [(25, 7), (50, 7), (100, None)]
    gap_in_middle = dose_phases([_step(1, 25, boundsDuration={"value": 7, "code": "d"}), _step(2, 50),
                                 _step(3, 100)], None)
    assert [(p.dose.mg, p.days) for p in gap_in_middle] == [(25, None)]
    text = dose_phases([{"text": "1 tab daily for 7 days then 2 tabs daily for 7 days then 3 tabs daily"}],
                       Strength(10))
    assert [(p.dose.mg, p.days) for p in text] == [(10, 7), (20, 7), (30, None)]
    middle_unknown = dose_phases([{"text": "1 tab daily for 7 days then 2 tabs daily then 3 tabs daily"}],
                                 Strength(10))
    assert [(p.dose.mg, p.days) for p in middle_unknown] == [(10, None)]
    tablets = dose_phases([{"sequence": 1, "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
                            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                                  "boundsDuration": {"value": 7, "code": "d"}}}},
                           {"sequence": 2, "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}],
                            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}], Strength(25))
    assert [(p.dose.mg, p.days) for p in tablets] == [(25, 7), (50, None)]
    assert [(p.dose.mg, p.days) for p in dose_phases([{"text": "two tabs daily then"}], Strength(10))] == [
        (20, None)]


def test_the_medication_ingredient_label_comes_from_text_or_display() -> None:
    def matches(label: str) -> bool:
        return label.split() == ["sertraline"]

    text_only = {"itemCodeableConcept": {"text": "sertraline"}, "strength": {"numerator": {"value": 50, "unit": "mg"}}}
    display_only = {"itemCodeableConcept": {"coding": [{"display": "sertraline"}]},
                    "strength": {"numerator": {"value": 50, "unit": "mg"}}}
    assert strength_from_medication(_medication(text_only), matches) == Strength(50)
    assert strength_from_medication(_medication(display_only), matches) == Strength(50)
    unreadable_first = [_ingredient("sertraline", 100, "tablet"), _ingredient("sertraline", 50, "mg")]
    assert strength_from_medication(_medication(*unreadable_first), lambda label: "sertraline" in label) == \
        Strength(50)
    zero_first = [_ingredient("sertraline", 100, "mg", 0), _ingredient("sertraline", 50, "mg")]
    assert strength_from_medication(_medication(*zero_first), lambda label: "sertraline" in label) == Strength(50)


def test_a_dose_range_low_end_and_a_skipped_rate_entry() -> None:
    low_high = {"low": {"value": 50, "unit": "mg"}, "high": {"value": 100, "unit": "mg"}}
    ranged = {"doseAndRate": [{"rateQuantity": {"value": 1}}, {"doseRange": low_high}],
              "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    assert daily_dose([ranged], None).mg == 50
    no_low = {"doseAndRate": [{"doseRange": {"high": {"value": 100, "unit": "mg"}}}], "text": "daily"}
    assert daily_dose([no_low], None).mg is None


# -- the supply a dispensed quantity lasts (issue #20: Oracle Health sends no expectedSupplyDuration) ------------------

def _cap(value: float) -> dict:  # type: ignore[type-arg]
    return {"value": value, "unit": "cap", "system": "http://unitsofmeasure.org", "code": "{Capsule}"}


@pytest.mark.parametrize("quantity,dosage,days", [
    (_cap(180), {**dose(2, "cap", code="QD"), "doseAndRate": [{"doseQuantity": _cap(2)}]}, 90.0),
    (_cap(90), {"doseAndRate": [{"doseQuantity": _cap(1)}], "text": "60 mg = 1 cap, Oral, Daily, 90 cap"}, 90.0),
    ({"value": 60, "unit": "tablet"}, dose(1, "tab", frequency=2), 30.0),     # the same unit, written otherwise
    ({"value": 28000, "unit": "mg"}, dose(1000, "mg", frequency=4), 7.0),
])
def test_a_quantity_lasts_its_amount_over_the_amount_taken_a_day(quantity: dict, dosage: dict,  # type: ignore[type-arg]
                                                                 days: float) -> None:
    from fhir_mapping.dosage import supply_days

    assert supply_days(quantity, [dosage]) == days


@pytest.mark.parametrize("quantity,dosages", [
    (_cap(90), [{"doseAndRate": [{"doseQuantity": _cap(2)}], "asNeededCodeableConcept": {"text": "as needed"},
                 "timing": {"code": {"coding": [{"code": "Q4H"}]}}}]),   # the published example: PRN
    ({"value": 30, "unit": "mg"}, [dose(1, "tab")]),                     # a mass against a tablet count
    (_cap(90), [{"doseAndRate": [{"doseQuantity": _cap(1)}]}]),          # no frequency stated: never guessed
    (_cap(90), [dose(1, "cap"), dose(1, "cap")]),                        # several dosages at once
    (None, [dose(1, "cap")]),
    ({"value": 0, "unit": "cap"}, [dose(1, "cap")]),
])
def test_a_supply_is_read_only_when_it_is_plain(quantity: dict | None, dosages: list) -> None:  # type: ignore[type-arg]
    from fhir_mapping.dosage import supply_days

    assert supply_days(quantity, dosages) is None


UNKNOWN = DailyDose(None, DoseSource.NONE)


@pytest.mark.parametrize("dosages", [
    [],
    [{"text": "use as directed"}],  # a scheduled dosage in words we cannot read
    [dose(1, "tablet", code="QD")],  # tablets of unknown strength
    [dose(1, "mg", frequency=None, text="take 1 mg every other blue moon")],  # a frequency named, not readable
    [dose(50, "mg"), {"text": "use as directed"}],  # never a partial sum
])
def test_a_daily_dose_that_cannot_be_read_is_unknown_with_no_source(dosages: list[dict]) -> None:  # type: ignore[type-arg]
    assert daily_dose(dosages, None) == UNKNOWN


@pytest.mark.parametrize("text", ["", "   ", "take as directed", "1 tablet twice daily"])
def test_free_text_without_a_readable_mg_is_unknown_with_no_source(text: str) -> None:
    # The last: tablets, but no strength to make them mg.
    assert parse_dosage_text(text, None) == UNKNOWN


def test_an_as_needed_dosage_listed_first_leaves_the_scheduled_one_after_it_counted() -> None:
    assert daily_dose([dose(25, "mg", prn=True), dose(50, "mg")], None) == DailyDose(50, DoseSource.STRUCTURED)

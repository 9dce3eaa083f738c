"""Sigs as EHRs write them: the frequency is read, or left unknown, never assumed once daily."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fhir_mapping import sig
from fhir_mapping.dosage import Strength, daily_dose, dose_phases, parse_dosage_text


@pytest.mark.parametrize("text,per_day", [
    ("Take 1 tablet by mouth 2 (two) times a day", 2),
    ("Take 1 tablet by mouth every 12 (twelve) hours", 2),
    ("1 tab PO BID", 2),
    ("1 tab po b.i.d.", 2),
    ("one tablet q12h", 2),
    ("Take 1 tablet by mouth nightly", 1),
    ("Take 1 tablet by mouth at bedtime", 1),
    ("Take 1 tablet by mouth every morning and at bedtime", 2),
    ("Take 1 tablet by mouth 3 times daily with meals", 3),
    ("Take 1 capsule by mouth daily", 1),
    ("Take 1 tablet by mouth once daily in the morning", 1),
    ("Take 2 tablets by mouth twice daily", 2),
    ("1 tablet TID", 3),
    ("1 tablet QID", 4),
    ("1 tablet every 8 hours", 3),
    ("1 tablet q6h", 4),
    ("take 1 tablet every 4 to 6 hours", 4),  # the longer interval: never credit a dose maybe not given
    ("1 tablet every other day", 0.5),
    ("1 patch every 3 days", 1 / 3),
    ("1 tablet once a week", 1 / 7),
    ("1 tablet weekly", 1 / 7),
    ("Take 1 tablet by mouth 1 time each day", 1),
    ("2x daily", 2),
])
def test_frequencies_ehrs_write(text: str, per_day: float) -> None:
    f = sig.frequency(text)
    assert f.stated and f.per_day == pytest.approx(per_day)


@pytest.mark.parametrize("text", [
    "Take 1 tablet by mouth with meals",          # two meals or three?
    "Take as directed every so often",
    "1 tablet every few hours",
])
def test_a_named_frequency_we_cannot_read_is_unknown_not_once_daily(text: str) -> None:
    f = sig.frequency(text)
    assert f.stated and f.per_day is None


@pytest.mark.parametrize("text", ["Take 1 tablet by mouth", "Use as directed", ""])
def test_no_frequency_named(text: str) -> None:
    assert sig.frequency(text) == sig.Frequency(None, False)


def test_a_structured_dose_with_an_unreadable_frequency_is_unknown_not_halved() -> None:
    dosage = {"text": "Take 1 tablet by mouth with meals",
              "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}
    assert daily_dose([dosage], Strength(100)).mg is None


def test_a_structured_dose_reads_the_frequency_from_the_sig() -> None:
    dosage = {"text": "Take 1 tablet by mouth 2 (two) times a day",
              "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}
    dose = daily_dose([dosage], Strength(100))
    assert dose.mg == 200 and not dose.frequency_assumed


def test_a_structured_dose_without_any_frequency_is_once_daily_and_flagged() -> None:
    dose = daily_dose([{"doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg"}}]}], None)
    assert dose.mg == 50 and dose.frequency_assumed


@pytest.mark.parametrize("text,mg", [
    ("Take 1 tablet by mouth 2 (two) times a day", 200),
    ("Take 1.5 tablets by mouth daily", 150),
    ("Take 1/2 tablet by mouth at bedtime", 50),
    ("Take 150 mg by mouth every morning", 150),
    ("take two tablets nightly", 200),
])
def test_text_only_doses(text: str, mg: float) -> None:
    assert parse_dosage_text(text, Strength(100)).mg == pytest.approx(mg)


def test_as_needed_text_is_prn() -> None:
    assert parse_dosage_text("Take 1 tablet by mouth every 6 hours as needed for anxiety", Strength(25)).prn
    assert daily_dose([{"text": "1 tab q6h PRN"}], Strength(25)).prn


def test_timing_when_and_time_of_day_count_as_administrations() -> None:
    when = {"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            "timing": {"repeat": {"when": ["MORN", "HS"]}}}
    times = {"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
             "timing": {"repeat": {"timeOfDay": ["08:00:00", "14:00:00", "20:00:00"]}}}
    assert daily_dose([when], Strength(50)).mg == 100
    assert daily_dose([times], Strength(50)).mg == 150


def test_concurrent_dosages_add_up_and_dose_range_uses_its_low_end() -> None:
    morning = {"doseAndRate": [{"doseQuantity": {"value": 100, "unit": "mg"}}],
               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    evening = {"doseAndRate": [{"doseRange": {"low": {"value": 50, "unit": "mg"}, "high": {"value": 100,
                                                                                         "unit": "mg"}}}],
               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    assert daily_dose([morning, evening], None).mg == 150


def test_liquids_use_mg_per_ml_times_ml() -> None:
    dosage = {"doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mL", "code": "mL"}}],
              "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    assert daily_dose([dosage], Strength(4, "ml")).mg == 20


def test_a_taper_with_sequences_is_dosed_step_by_step() -> None:
    def step(seq: int, mg: float, days: int | None) -> dict:  # type: ignore[type-arg]
        repeat: dict = {"frequency": 1, "period": 1, "periodUnit": "d"}  # type: ignore[type-arg]
        if days is not None:
            repeat["boundsDuration"] = {"value": days, "unit": "days", "code": "d"}
        return {"sequence": seq, "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}],
                "timing": {"repeat": repeat}}

    phases = dose_phases([step(1, 50, 7), step(2, 100, None)], None)
    assert [(p.dose.mg, p.days) for p in phases] == [(50, 7), (100, None)]
    # Steps of unknown length: the lowest step, so no dose is credited that may not have been given.
    unbounded = dose_phases([step(1, 50, None), step(2, 100, None)], None)
    assert [(p.dose.mg, p.days) for p in unbounded] == [(50, None)]


def test_a_taper_in_text_is_dosed_step_by_step() -> None:
    phases = dose_phases([{"text": "Take 1 tablet daily for 7 days, then take 2 tablets daily"}], Strength(50))
    assert [(p.dose.mg, p.days) for p in phases] == [(50, 7), (100, None)]


_WORDS = st.sampled_from(["take", "1", "2", "tablet", "tablets", "by", "mouth", "daily", "twice", "every", "12",
                          "hours", "(two)", "times", "a", "day", "at", "bedtime", "q8h", "bid", "with", "meals",
                          "morning", "and", "as", "needed", "mg", "0.5", "weekly", "other", "x", "/", "-", "to"])


@given(st.lists(_WORDS, max_size=14).map(" ".join))
@example(text="every 0.5 hours")  # found by hypothesis: 48 a day
def test_any_sig_is_read_or_left_unknown_never_negative(text: str) -> None:
    f = sig.frequency(text)
    assert f.per_day is None or 0 < f.per_day <= 24
    assert f.per_day is None or f.stated
    dose = parse_dosage_text(text, Strength(100))
    assert dose.mg is None or dose.mg > 0


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    sig.frequency(text)
    parse_dosage_text(text, Strength(10))
    dose_phases([{"text": text}], Strength(10))


def test_a_tapering_sig_is_split_into_its_steps_without_empty_ones_or_their_punctuation() -> None:
    assert sig.phases("Take 1 tablet daily for 7 days;, then 2 tablets daily.") == [
        "take 1 tablet daily for 7 days", "2 tablets daily"]

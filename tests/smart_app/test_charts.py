"""The review page's charts stay bounded and readable whatever the data."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from eligibility import Adequacy, Outcome, TrialAssessment
from fhir_mapping import BloodPressureFact, ObservationKind, ScoreFact
from smart_app.charts import bp_svg, timeline_svg

AS_OF = dt.date(2026, 11, 1)


def trial(start: dt.date, end: dt.date) -> TrialAssessment:
    return TrialAssessment("sertraline", "SSRI", "name", start, end, True, 150, 50, 10, 10, Adequacy.ADEQUATE,
                           None, None, Outcome.UNKNOWN, ("MedicationStatement/x",))


def test_a_trial_timeline_of_decades_renders_with_few_year_labels() -> None:
    svg = str(timeline_svg([trial(dt.date(1990, 1, 1), AS_OF)], [], AS_OF))
    labels = re.findall(r">([A-Z][a-z]{2} \d{4})</text>", svg)
    assert 1 <= len(labels) <= 9


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=AS_OF))
def test_any_start_date_renders(start: dt.date) -> None:
    assert "<svg" in str(timeline_svg([trial(start, AS_OF)], [], AS_OF))


def test_an_absurd_blood_pressure_keeps_the_chart_small_and_says_it_is_off_scale() -> None:
    readings = [BloodPressureFact("a", AS_OF - dt.timedelta(days=20), 130, 80),
                BloodPressureFact("b", AS_OF - dt.timedelta(days=5), 10_000_000, 80)]
    svg = str(bp_svg(readings, AS_OF, 140, 90))
    assert len(svg) < 20_000
    assert "off the chart" in svg
    heights = [float(h) for h in re.findall(r'viewBox="0 0 \d+ (\d+(?:\.\d+)?)"', svg)]
    assert heights and max(heights) < 400


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 364), st.floats(-1e12, 1e12, allow_nan=False),
                          st.floats(-1e12, 1e12, allow_nan=False)), min_size=1, max_size=40))
def test_any_blood_pressure_values_render_within_a_bounded_size(values: list[tuple[int, float, float]]) -> None:
    readings = [BloodPressureFact(f"r{i}", AS_OF - dt.timedelta(days=d), s, di) for i, (d, s, di) in enumerate(values)]
    svg = str(bp_svg(readings, AS_OF, 140, 90))
    assert len(svg) < 40_000


def test_scores_outside_their_range_never_reach_the_chart() -> None:
    scores = [ScoreFact("p", ObservationKind.PHQ9_TOTAL, AS_OF - dt.timedelta(days=3), 20)]
    assert "<svg" in str(timeline_svg([], scores, AS_OF))


def test_the_timelines_description_counts_in_words() -> None:
    """Read aloud by a screen reader: "1 trial; 0 PHQ-9 scores and 0 GAD-7 scores", never "1 trial(s)" (issue 18)."""
    one = str(timeline_svg([trial(dt.date(2026, 1, 1), AS_OF)], [], AS_OF))
    two = str(timeline_svg([trial(dt.date(2025, 1, 1), dt.date(2025, 6, 1)), trial(dt.date(2026, 1, 1), AS_OF)],
                           [ScoreFact("p", ObservationKind.PHQ9_TOTAL, AS_OF - dt.timedelta(days=3), 20)], AS_OF))
    assert "1 trial; 0 PHQ-9 scores and 0 GAD-7 scores." in one
    assert "2 trials; 1 PHQ-9 score and 0 GAD-7 scores." in two
    assert "(s)" not in one + two

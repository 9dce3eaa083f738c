"""Property tests for the date arithmetic the rules rely on."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from eligibility.dates import months_before
from eligibility.trials import _union_days
from fhir_mapping import Course, DoseSegment, DoseSource, MatchMethod
from fhir_mapping.dates import parse_day

days = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2040, 12, 31))


@given(day=days, months=st.integers(min_value=0, max_value=240))
def test_months_before_is_calendar_months(day: dt.date, months: int) -> None:
    earlier = months_before(day, months)
    assert (day.year * 12 + day.month) - (earlier.year * 12 + earlier.month) == months
    assert earlier.day == day.day or earlier.day in (28, 29, 30)  # clamped at a month's end
    assert earlier <= day


@given(st.lists(st.tuples(days, st.integers(min_value=0, max_value=400)), max_size=8))
def test_union_of_intervals_is_never_more_than_the_sum_nor_less_than_the_longest(spans: list) -> None:  # type: ignore[type-arg]
    intervals = [(start, start + dt.timedelta(days=length)) for start, length in spans]
    total = _union_days(intervals)
    assert total <= sum(length for _, length in spans)
    assert total >= max((length for _, length in spans), default=0)
    assert _union_days(intervals + intervals) == total  # duplicates never count twice


@given(day=days, suffix=st.sampled_from(["", "T10:00:00Z", "T23:59:59-05:00", "T00:00:00+14:00"]))
def test_a_datetime_is_read_as_the_day_written_in_it(day: dt.date, suffix: str) -> None:
    assert parse_day(day.isoformat() + suffix) == day


@given(st.text(max_size=30))
def test_parse_day_never_raises(value: str) -> None:
    result = parse_day(value)
    assert result is None or isinstance(result, dt.date)


@given(start=days, length=st.integers(min_value=0, max_value=500), as_of=days)
def test_course_end_is_within_start_and_as_of(start: dt.date, length: int, as_of: dt.date) -> None:
    ongoing = Course("x", "SSRI", MatchMethod.NAME, (DoseSegment(start, None, 10, DoseSource.TEXT, "e"),))
    finished = Course("x", "SSRI", MatchMethod.NAME,
                      (DoseSegment(start, start + dt.timedelta(days=length), 10, DoseSource.TEXT, "e"),))
    for course in (ongoing, finished):
        end = course.end(as_of)
        assert end >= course.start
        assert end <= max(as_of, course.start)


def test_months_before_falls_back_to_the_last_day_of_a_shorter_month() -> None:
    assert months_before(dt.date(2026, 5, 31), 1) == dt.date(2026, 4, 30)
    assert months_before(dt.date(2024, 3, 31), 1) == dt.date(2024, 2, 29)
    assert months_before(dt.date(2026, 3, 31), 1) == dt.date(2026, 2, 28)
    assert months_before(dt.date(2026, 3, 15), 25) == dt.date(2024, 2, 15)

"""Moving a chart in time: every date, dateTime and instant of every resource moves by the same number of days,
partial dates keep their precision, and nothing that is not a date moves."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_sandbox import DemoClock, shift_bundle, shift_resource, shift_value
from ehr_sandbox.timeshift import is_date_element
from fhir_mapping.dates import parse_day

from ..conftest import fixture_bundles

days = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
shifts = st.integers(min_value=-20_000, max_value=20_000)
offsets = st.sampled_from(["Z", "+00:00", "-05:00", "+05:30", "+14:00", "-12:00"])
times = st.times().map(lambda t: t.replace(tzinfo=None))


@given(day=days, shift=shifts)
def test_a_date_moves_by_exactly_the_days(day: dt.date, shift: int) -> None:
    assert shift_value(day.isoformat(), shift) == (day + dt.timedelta(days=shift)).isoformat()


@given(day=days, at=times, offset=offsets, shift=shifts)
def test_an_instant_moves_by_exactly_the_days_keeping_its_time_and_offset(
        day: dt.date, at: dt.time, offset: str, shift: int) -> None:
    value = f"{day.isoformat()}T{at.isoformat()}{offset}"
    moved = shift_value(value, shift)
    assert moved.endswith(f"T{at.isoformat()}{offset}")  # time, fraction and offset as written
    before = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    after = dt.datetime.fromisoformat(moved.replace("Z", "+00:00"))
    assert after - before == dt.timedelta(days=shift)
    assert parse_day(moved) == parse_day(value) + dt.timedelta(days=shift)  # type: ignore[operator]


@given(day=days, shift=shifts)
def test_moving_there_and_back_is_the_identity(day: dt.date, shift: int) -> None:
    for value in (day.isoformat(), f"{day.isoformat()}T10:15:00-05:00"):
        assert shift_value(shift_value(value, shift), -shift) == value


@given(a=days, b=days, shift=shifts)
def test_order_and_distance_between_two_days_are_kept(a: dt.date, b: dt.date, shift: int) -> None:
    moved_a, moved_b = (dt.date.fromisoformat(shift_value(d.isoformat(), shift)) for d in (a, b))
    assert moved_b - moved_a == b - a


@pytest.mark.parametrize(("value", "shift", "expected"), [
    ("2024-02-28", 1, "2024-02-29"),  # a leap year's extra day
    ("2024-02-29", 1, "2024-03-01"),
    ("2023-02-28", 1, "2023-03-01"),  # no 29th in 2023
    ("2024-02-29", 365, "2025-02-28"),  # 2025 has no 29 February: 365 days later is the 28th
    ("2024-02-29", -366, "2023-02-28"),
    ("2026-11-01", 36, "2026-12-07"),
    ("2026-12-31T23:30:00+01:00", 1, "2027-01-01T23:30:00+01:00"),
    ("2025-09-02T10:00:00.123Z", -1, "2025-09-01T10:00:00.123Z"),
    ("2025-09-02T10:00:00Z", 0, "2025-09-02T10:00:00Z"),
])
def test_examples(value: str, shift: int, expected: str) -> None:
    assert shift_value(value, shift) == expected


@pytest.mark.parametrize(("value", "shift", "expected"), [
    ("2024", 36, "2024"),  # five weeks do not make another year
    ("2024", 200, "2025"),  # 2024-01-01 + 200 days is 2024-07-19: 2025-01-01 is nearer than 2024-01-01
    ("2024", -200, "2023"),
    ("2024-03", 36, "2024-04"),  # 2024-03-01 + 36 = 2024-04-06, nearest month start 2024-04-01
    ("2024-03", 10, "2024-03"),  # 2024-03-11: 1 March is nearer than 1 April
    ("2024-12", 40, "2025-01"),
    ("2024-02", 29, "2024-03"),  # through a leap day
])
def test_a_partial_date_keeps_its_precision(value: str, shift: int, expected: str) -> None:
    assert shift_value(value, shift) == expected


@given(year=st.integers(min_value=1900, max_value=2100), month=st.one_of(st.none(), st.integers(1, 12)),
       shift=shifts)
def test_a_partial_date_is_read_at_most_half_its_unit_from_its_first_day_moved(
        year: int, month: int | None, shift: int) -> None:
    value = f"{year:04d}" if month is None else f"{year:04d}-{month:02d}"
    moved = shift_value(value, shift)
    assert len(moved) == len(value)  # the same precision
    first, first_moved = parse_day(value), parse_day(moved)
    assert first is not None and first_moved is not None
    error = abs((first_moved - (first + dt.timedelta(days=shift))).days)
    assert error <= (366 if month is None else 31) // 2


@given(a=st.integers(1900, 2100), b=st.integers(1900, 2100), shift=shifts)
def test_partial_dates_keep_their_order(a: int, b: int, shift: int) -> None:
    lo, hi = sorted((a, b))
    assert shift_value(f"{lo:04d}", shift) <= shift_value(f"{hi:04d}", shift)


@pytest.mark.parametrize("value", ["not a date", "2024-13-01", "2024-02-30", "24-03-01", "", "10:00:00",
                                   "2024-03-01T", "9999-12-31"])
def test_what_is_not_a_movable_date_is_left_as_written(value: str) -> None:
    assert shift_value(value, 1) == value


def test_every_kind_of_date_element_moves_and_codes_do_not() -> None:
    resource = {
        "resourceType": "Observation", "id": "2024", "status": "final", "issued": "2026-10-01T08:00:00Z",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2024", "version": "2024-03-01"}],
                 "text": "2024-03-01"},
        "effectivePeriod": {"start": "2026-10-01", "end": "2026-10-02"}, "valueString": "2026-10-01",
        "extension": [{"url": "http://example.org/when", "valueDateTime": "2026-10-01T10:00:00+02:00"}],
        "component": [{"code": {"text": "x"}, "valueDate": "2026-10-01"}],
    }
    moved = shift_resource(resource, 10)
    assert moved["issued"] == "2026-10-11T08:00:00Z"
    assert moved["effectivePeriod"] == {"start": "2026-10-11", "end": "2026-10-12"}
    assert moved["extension"][0]["valueDateTime"] == "2026-10-11T10:00:00+02:00"
    assert moved["component"][0]["valueDate"] == "2026-10-11"
    # Not dates: an id, a code, a code system's version, text, a string value.
    assert moved["id"] == "2024" and moved["code"] == resource["code"] and moved["valueString"] == "2026-10-01"
    assert resource["issued"] == "2026-10-01T08:00:00Z"  # the input is not changed
    timing = shift_resource({"event": ["2026-10-01", "2026-10-08"], "repeat": {"boundsPeriod": {
        "start": "2026-10-01"}}}, 1)
    assert timing == {"event": ["2026-10-02", "2026-10-09"], "repeat": {"boundsPeriod": {"start": "2026-10-02"}}}


@pytest.mark.parametrize("name", ["effectiveDateTime", "effectiveInstant", "onsetDateTime", "abatementDateTime",
                                  "recordedDate", "birthDate", "authoredOn", "authored", "issued", "whenHandedOver",
                                  "whenPrepared", "occurrenceDateTime", "start", "end", "date", "lastUpdated"])
def test_date_elements_are_known_by_name(name: str) -> None:
    assert is_date_element(name)


@pytest.mark.parametrize("name", ["code", "id", "version", "value", "linkId", "text", "display", "Date"])
def test_other_elements_are_not(name: str) -> None:
    assert not is_date_element(name)


_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _date_strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _date_strings(v, k)]
    if isinstance(node, list):
        return [s for v in node for s in _date_strings(v, key)]
    return [(key, node)] if isinstance(node, str) and _FULL_DATE.match(node) else []


@pytest.mark.parametrize("path", fixture_bundles(), ids=lambda p: p.stem)
def test_every_date_of_every_fixture_moves_and_nothing_else(path: Any) -> None:
    bundle = json.loads(path.read_text())
    moved = shift_bundle(bundle, 36)
    before, after = _date_strings(bundle), _date_strings(moved)
    assert before, "a fixture without dates"
    assert [k for k, _ in before] == [k for k, _ in after]
    for (key, old), (_, new) in zip(before, after, strict=True):
        day = parse_day(old)
        if day is None:  # not a date at all ('2019-13-45' in an entry that fails validation): left as written
            assert new == old, key
        else:
            assert parse_day(new) == day + dt.timedelta(days=36), (key, old, new)
    # Every other value is as it was: moving back gives the fixture exactly.
    assert shift_bundle(moved, -36) == bundle


def test_the_demo_clock_pins_a_day_and_keeps_the_time_of_day() -> None:
    wall = dt.datetime(2026, 12, 6, 12, 34, 56, tzinfo=dt.UTC)
    clock = DemoClock.on(dt.date(2027, 3, 1), wall=lambda: wall)
    assert clock.today() == dt.date(2027, 3, 1)
    assert clock.now() - wall == dt.timedelta(days=clock.offset_days)
    assert clock.now().time() == wall.time() and clock.now().tzinfo == dt.UTC
    real = DemoClock()
    assert abs(real.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    assert real.today() == dt.date.today()

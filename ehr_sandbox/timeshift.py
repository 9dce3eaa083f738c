"""Moving synthetic charts in time, so that the demo judges them on the day it runs.

The fixtures describe their patients as of one day (``fixtures/build_patients.py`` ``AS_OF``). The sandbox moves
every date of every resource by the same number of days when it loads them, and its clock (``DemoClock``) says what
"today" and "now" are for the sandbox's own scenarios and for the service it calls. Pure functions, no I/O.

What moves:
- every element of a FHIR date, dateTime or instant type, found by its name (``*DateTime``, ``*Date``,
  ``*Instant``, and the unsuffixed ones: ``issued``, ``authoredOn``, ``start``/``end`` of every Period, …) and only
  when its value is written in that grammar, so a code such as ``"2024"`` under ``code`` never moves;
- birth dates too. The rules read ages (the older-adult caution at 65, the label's 28 mg dose at 65 or older): a
  birth date left in place would age every patient by the distance between the demo's day and the fixtures' own,
  and a 64-year-old's card would change in a year's time. Moved, each patient is on the judged day as old (in days)
  as on the fixtures' day.

How a value moves:
- a full date, or the date of a dateTime/instant, by exactly ``days`` calendar days (leap days included); the time,
  its fraction and its offset are kept as written, so an instant moves by exactly ``days`` x 24 h;
- a partial date ('2024', '2024-03') keeps its precision. The rules read one as its first day
  (``fhir_mapping.dates``), so it moves to the year (month) whose first day is nearest to its own first day moved by
  ``days`` (ties to the earlier one): the first day read from it is then off by at most half a year (month), the
  best a value of that precision can do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: FHIR R4 date / dateTime / instant (with the year range the standard library can represent).
_VALUE = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12]\d|3[01])(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                    r"(?:Z|[+-]\d{2}:\d{2})?)?)?)?$")

#: Date-typed elements whose names do not say so by a suffix (R4: Period, Timing, Appointment, Observation,
#: MedicationRequest, MedicationDispense, QuestionnaireResponse, Condition, Encounter, Bundle, Meta …).
_NAMED = frozenset({
    "start", "end", "date", "issued", "authoredOn", "authored", "recorded", "created", "whenHandedOver",
    "whenPrepared", "lastUpdated", "timestamp", "event", "dateAsserted", "lastOccurrence", "dateWritten",
})
_SUFFIXES = ("DateTime", "Date", "Instant")


def is_date_element(name: str) -> bool:
    """Whether an element of this name holds a date, dateTime or instant (in any resource we load)."""
    return name in _NAMED or (name.endswith(_SUFFIXES) and name not in _SUFFIXES)


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


def shift_value(value: str, days: int) -> str:
    """One date, dateTime or instant moved by ``days`` days (see the module). A value not in that grammar, or one
    that would leave the years 1 to 9999, is returned as it is."""
    m = _VALUE.match(value)
    if m is None:
        return value
    year, month, day, rest = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    try:
        if day is not None:
            moved = dt.date(int(year), int(month), int(day)) + dt.timedelta(days=days)
            return moved.isoformat() + rest
        first = dt.date(int(year), int(month or 1), 1)
        target = first + dt.timedelta(days=days)
        if month is None:
            candidates = [dt.date(y, 1, 1) for y in (target.year, target.year + 1) if y <= dt.MAXYEAR]
            best = min(candidates, key=lambda c: (abs((c - target).days), c))
            return f"{best.year:04d}"
        index = _month_index(target.year, target.month)
        options = [dt.date(i // 12, i % 12 + 1, 1) for i in (index, index + 1) if i // 12 <= dt.MAXYEAR]
        best = min(options, key=lambda c: (abs((c - target).days), c))
        return f"{best.year:04d}-{best.month:02d}"
    except (ValueError, OverflowError):
        return value


def shift_resource(resource: Any, days: int) -> Any:
    """A copy of a FHIR resource (or any JSON value) with every date element moved by ``days`` days."""
    return _shift(resource, days, date_element=False)


def _shift(node: Any, days: int, *, date_element: bool) -> Any:
    if isinstance(node, dict):
        return {k: _shift(v, days, date_element=is_date_element(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_shift(v, days, date_element=date_element) for v in node]
    if date_element and isinstance(node, str) and days:
        return shift_value(node, days)
    return node


def shift_bundle(bundle: dict[str, Any], days: int) -> dict[str, Any]:
    """A Bundle whose resources (and the Bundle's own dates) are moved by ``days`` days."""
    moved: dict[str, Any] = shift_resource(bundle, days)
    return moved


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DemoClock:
    """The demo's "today" and "now": the real clock moved by whole days, so that a pinned day keeps its hours.

    ``DemoClock()`` is the real clock; ``DemoClock.on(day)`` says that today is ``day`` and keeps counting from
    there (the time of day is the real one, so a dose "50 minutes ago" is 50 real minutes ago). ``now`` is an aware
    UTC time, as the service expects; ``today`` is the day on this machine's calendar (a clinician's "today", not
    UTC's, which is already tomorrow on an American evening).
    """

    offset_days: int = 0
    wall: Callable[[], dt.datetime] = _utc_now

    @classmethod
    def on(cls, day: dt.date, wall: Callable[[], dt.datetime] = _utc_now) -> DemoClock:
        return cls((day - wall().astimezone().date()).days, wall)

    def now(self) -> dt.datetime:
        return self.wall().astimezone(dt.UTC) + dt.timedelta(days=self.offset_days)

    def today(self) -> dt.date:
        return (self.wall().astimezone() + dt.timedelta(days=self.offset_days)).date()

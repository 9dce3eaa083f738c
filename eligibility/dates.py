"""Calendar arithmetic the rules share (policy horizons and trial look-backs)."""

from __future__ import annotations

import datetime as dt


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` earlier; the month's last day when that day does not exist (31 March → 28 Feb)."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    # Every month has a 28th. Equivalent mutants: the message of an assertion never raised changes nothing.
    raise AssertionError("unreachable")  # pragma: no cover, no mutate

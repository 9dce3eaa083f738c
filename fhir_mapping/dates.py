"""FHIR date and dateTime values as calendar days.

CAUTION: the rules reason in days. A dateTime is read as the day written in it (its own time zone), which is the day
a clinician sees in the chart; partial dates ('2024', '2024-03') are read as their first day.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_day(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    m = _DATE.match(value.strip())
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def effective_day(resource: dict[str, Any]) -> dt.date | None:
    """When an Observation applies: effectiveDateTime, effectivePeriod.start, effectiveInstant, else issued."""
    period = resource.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    return (
        parse_day(resource.get("effectiveDateTime"))
        or parse_day(period.get("start"))
        or parse_day(period.get("end"))
        or parse_day(resource.get("effectiveInstant"))
        or parse_day(resource.get("issued"))
    )


_DURATION_DAYS = {"d": 1.0, "day": 1.0, "days": 1.0, "wk": 7.0, "week": 7.0, "weeks": 7.0, "mo": 30.0,
                  "month": 30.0, "months": 30.0, "h": 1 / 24, "a": 365.0, "year": 365.0}


def duration_days(duration: dict[str, Any] | None) -> float | None:
    if not duration or duration.get("value") is None:
        return None
    unit = str(duration.get("code") or duration.get("unit") or "d").lower()
    factor = _DURATION_DAYS.get(unit)
    return None if factor is None else float(duration["value"]) * factor

"""The policy's numbers as the cards write them: one place turns a threshold into words, so a site whose policy
says 90 minutes of monitoring never sees a card that says 2 hours."""

from __future__ import annotations


def duration(minutes: float, *, short: bool = False, adjective: bool = False) -> str:
    """A period in words: whole hours as hours ("2 hours"; "2 h" in a summary; "2-hour" before a noun), any other
    length in minutes ("90 minutes", "90 min", "90-minute")."""
    if minutes % 60 == 0:
        hours = minutes / 60
        if short:
            return f"{hours:g} h"
        return f"{hours:g}-hour" if adjective else f"{hours:g} hour" + ("" if hours == 1 else "s")
    if short:
        return f"{minutes:g} min"
    return f"{minutes:g}-minute" if adjective else f"{minutes:g} minutes"


def days(count: int) -> str:
    """A number of days in words ("7 days", "1 day")."""
    return f"{count} day" + ("" if count == 1 else "s")


def blood_pressure(systolic: float, diastolic: float) -> str:
    """A blood-pressure limit as clinicians write it ("140/90")."""
    return f"{systolic:g}/{diastolic:g}"

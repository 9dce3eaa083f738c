"""Free-text prescription instructions ("sigs") as EHRs write them: how often, and how much per dose.

"Take 1 tablet by mouth 2 (two) times a day", "every 12 (twelve) hours", "BID", "q12h", "nightly", "every morning
and at bedtime", "3 times daily with meals". The rule that matters for safety: text that names a frequency we do not
understand leaves the frequency *unknown*; it is never read as once daily (that would halve a twice-daily dose and
make an adequate trial look inadequate).

Written here rather than taken from a library: the one maintained sig parser on PyPI (``dose-instruction-parser``)
needs spaCy < 3.5, NumPy 1.26 and a language model downloaded from a hub at run time, which a hospital install (and
this project's offline build) cannot do; the vocabulary below is small, tested word by word, and pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "half": "0.5", "one-half": "0.5", "one half": "0.5",
}
_NUM = r"(\d+(?:\.\d+)?)"


@dataclass(frozen=True, slots=True)
class Frequency:
    """How many administrations a day the text says. ``stated`` with ``per_day`` None: named but not understood."""

    per_day: float | None
    stated: bool


@lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """Lower case, '2 (two)' → '2', number words → digits, abbreviations' dots dropped, single spaces."""
    t = f" {text.lower()} "
    t = re.sub(r"(\d+(?:\.\d+)?)\s*\(\s*[a-z-]+\s*\)", r"\1", t)  # "2 (two)", "12 (twelve)"
    t = re.sub(r"\b1\s*/\s*2\b", "0.5", t)
    t = re.sub(r"\b(b|t|q)\.\s*i\.\s*d\.?", r"\1id", t)
    t = re.sub(r"\bq\.\s*(\d+)\s*h\.?", r"q\1h", t)
    t = re.sub(r"\b(q)\.?\s*(d|am|pm|hs|od)\b\.?", r"q\2", t)
    t = re.sub(r"\bh\.s\.?", "hs", t)
    t = re.sub(r"\bp\.r\.n\.?", "prn", t)
    for word, digit in sorted(_NUMBER_WORDS.items(), key=lambda kv: -len(kv[0])):
        t = re.sub(rf"\b{word}\b", digit, t)
    t = re.sub(r"\bonce\b", "1 time", t)
    t = re.sub(r"\btwice\b", "2 times", t)
    t = re.sub(r"\bthrice\b", "3 times", t)
    return " ".join(t.split())


# Counted intervals and counts, most specific first; each gives administrations per day.
_EVERY_HOURS_RANGE = re.compile(rf"\b(?:every|q)\s*{_NUM}\s*(?:-|to)\s*{_NUM}\s*(?:hours?|hrs?|h)\b")
_EVERY_HOURS = re.compile(rf"\b(?:every\s*{_NUM}\s*(?:hours?|hrs?|h)|q\s*{_NUM}\s*(?:hours?|hrs?|h))\b")
_EVERY_DAYS = re.compile(rf"\bevery\s*{_NUM}\s*days?\b|\bq\s*{_NUM}\s*d(?:ays?)?\b")
_EVERY_OTHER_DAY = re.compile(r"\bevery other day\b|\bqod\b|\balternate days\b")
_TIMES_PER_DAY = re.compile(rf"\b{_NUM}\s*(?:times?|x)\s*(?:a|per|each|every|/)?\s*(?:day|daily|24 hours)\b")
_TIMES_PER_WEEK = re.compile(rf"\b{_NUM}\s*(?:times?|x)\s*(?:a|per|each|every|/)?\s*(?:week|weekly|wk)\b")
_WEEKLY = re.compile(r"\b(?:weekly|every week|per week|a week|qwk|q\s*week)\b")
_ABBREVIATIONS = {"qid": 4.0, "tid": 3.0, "bid": 2.0}
# Times of day, each one administration: "every morning and at bedtime" is two.
_EVENTS = {
    "morning": re.compile(r"\b(?:qam|every morning|each morning|in the morning|in the am|mornings?|am|breakfast|"
                          r"upon waking|on waking)\b"),
    "noon": re.compile(r"\b(?:at noon|midday|lunch|noon)\b"),
    "evening": re.compile(r"\b(?:qpm|every evening|each evening|in the evening|evenings?|pm|supper|dinner)\b"),
    "bedtime": re.compile(r"\b(?:at bedtime|bedtime|qhs|hs|nightly|every night|each night|at night|nighttime)\b"),
}
_WITH_MEALS = re.compile(r"\b(?:with|before|after) (?:each )?meals\b")
_ONCE_DAILY = re.compile(r"\b(?:daily|a day|per day|each day|every day|qd|qday|od|1 time|every 24 hours|q24h)\b")
# Words that name a frequency: when one is there and nothing above understood it, the frequency is unknown.
_FREQUENCY_WORDS = re.compile(r"\b(?:times?|every|each|q\d*\w*|daily|day|days|weekly|week|month|monthly|hours?|"
                              r"hrs?|nightly|bedtime|morning|evening|noon|meals?|bid|tid|qid|x)\b|\d+\s*x\b")


@lru_cache(maxsize=4096)
def frequency(text: str) -> Frequency:
    """Administrations per day named in a sig (already :func:`normalise`d or not)."""
    t = normalise(text)
    if m := _EVERY_HOURS_RANGE.search(t):
        # "every 4 to 6 hours": the longer interval, so no dose is credited that may not have been given.
        hours = max(float(m.group(1)), float(m.group(2)))
        return Frequency(24.0 / hours if hours >= 1 else None, True)
    if m := _EVERY_HOURS.search(t):
        hours = float(m.group(1) or m.group(2))
        # Under an hour apart ("every 0.5 hours") is no oral antidepressant schedule: named, not understood.
        return Frequency(24.0 / hours if hours >= 1 else None, True)
    if _EVERY_OTHER_DAY.search(t):
        return Frequency(0.5, True)
    if m := _EVERY_DAYS.search(t):
        days = float(m.group(1) or m.group(2))
        return Frequency(1.0 / days if days > 0 else None, True)
    if m := _TIMES_PER_DAY.search(t):
        return Frequency(float(m.group(1)), True)
    if m := _TIMES_PER_WEEK.search(t):
        return Frequency(float(m.group(1)) / 7, True)
    for word, per_day in _ABBREVIATIONS.items():
        if re.search(rf"\b{word}\b", t):
            return Frequency(per_day, True)
    events = [name for name, pattern in _EVENTS.items() if pattern.search(t)]
    if events:
        return Frequency(float(len(events)), True)
    if _WEEKLY.search(t):
        return Frequency(1 / 7, True)
    if _WITH_MEALS.search(t):
        return Frequency(None, True)  # "with meals" alone: two meals or three?
    if _ONCE_DAILY.search(t):
        return Frequency(1.0, True)
    return Frequency(None, bool(_FREQUENCY_WORDS.search(t)))


_PRN = re.compile(r"\b(?:as needed|prn|if needed|when needed|as required)\b")
_MASS = re.compile(rf"\b{_NUM}\s*(mg|mcg|g|microgram|micrograms|milligrams?)\b")
_UNITS = re.compile(rf"\b{_NUM}\s*(?:tablets?|tabs?|capsules?|caps?|patch(?:es)?|pills?|lozenges?)\b")
_VOLUME = re.compile(rf"\b{_NUM}\s*(?:ml|milliliters?|millilitres?)\b")
_THEN = re.compile(r"\bthen\b|;")
_MASS_TO_MG = {"mg": 1.0, "milligram": 1.0, "milligrams": 1.0, "g": 1000.0, "mcg": 0.001, "microgram": 0.001,
               "micrograms": 0.001}


def is_prn(text: str) -> bool:
    return bool(_PRN.search(normalise(text)))


@dataclass(frozen=True, slots=True)
class SigDose:
    """One dose as the text gives it: a mass in mg, or a count of units (tablets) or mL whose strength is elsewhere."""

    mg: float | None = None
    units: float | None = None
    ml: float | None = None


def dose(text: str) -> SigDose | None:
    """The amount per administration; None when the text gives none."""
    t = normalise(text)
    if m := _MASS.search(t):
        return SigDose(mg=float(m.group(1)) * _MASS_TO_MG[m.group(2)])
    if m := _UNITS.search(t):
        return SigDose(units=float(m.group(1)))
    if m := _VOLUME.search(t):
        return SigDose(ml=float(m.group(1)))
    return None


def phases(text: str) -> list[str]:
    """A tapering sig ("1 tablet daily for 7 days, then 2 tablets daily") split into its steps."""
    return [p.strip(" ,.") for p in _THEN.split(normalise(text)) if p.strip(" ,.")]

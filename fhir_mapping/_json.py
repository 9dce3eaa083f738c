"""Defensive access to raw JSON, for the cheap relevance checks that run before an entry is validated.

Parsed JSON objects are plain dicts, so these check ``dict`` (a fast type check) rather than ``Mapping`` (an ABC
check that cost a measurable share of a heavy chart's mapping time).
"""

from __future__ import annotations

from typing import Any


def obj(value: Any, key: str) -> dict[str, Any]:
    """``value[key]`` when both are JSON objects, else an empty dict."""
    if isinstance(value, dict):
        inner = value.get(key)
        if isinstance(inner, dict):
            return inner
    return {}


def arr(value: Any, key: str) -> list[Any]:
    """``value[key]`` when it is a JSON array, else an empty list."""
    if isinstance(value, dict):
        inner = value.get(key)
        if isinstance(inner, list):
            return inner
    return []


def text(value: Any, key: str) -> str:
    if isinstance(value, dict):
        inner = value.get(key)
        if type(inner) is str:
            return inner
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return str(inner)
    return ""


def codings(concept: Any) -> list[dict[str, Any]]:
    return [c for c in arr(concept, "coding") if isinstance(c, dict)]

"""Defensive access to raw JSON, for the cheap relevance checks that run before an entry is validated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def obj(value: Any, key: str) -> dict[str, Any]:
    """``value[key]`` when both are JSON objects, else an empty dict."""
    if isinstance(value, Mapping):
        inner = value.get(key)
        if isinstance(inner, dict):
            return inner  # parsed JSON: already a dict, no copy needed
    return {}


def arr(value: Any, key: str) -> list[Any]:
    """``value[key]`` when it is a JSON array, else an empty list."""
    if isinstance(value, Mapping):
        inner = value.get(key)
        if isinstance(inner, list):
            return inner
    return []


def text(value: Any, key: str) -> str:
    if isinstance(value, Mapping):
        inner = value.get(key)
        if isinstance(inner, str | int | float) and not isinstance(inner, bool):
            return str(inner)
    return ""


def codings(concept: Any) -> list[Mapping[str, Any]]:
    return [c for c in arr(concept, "coding") if isinstance(c, Mapping)]

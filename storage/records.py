"""The plain records the store keeps for the CDS face (the SMART face stores sealed JSON payloads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service: str
    hook_instance: str
    kind: str
    indicator: str
    suggestion_uuids: tuple[str, ...]
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    override_code: str | None
    override_display: str | None
    user_comment: str | None
    accepted_suggestions: tuple[str, ...]

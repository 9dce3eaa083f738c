"""The plain records the store keeps for the CDS face (the SMART face stores sealed JSON payloads)."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A NUL byte or a lone surrogate (JSON's "\u0000", "\ud800"): PostgreSQL refuses NUL in text and neither
#: database can encode a lone surrogate as UTF-8, so either fails the write after the request was accepted.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str, max_length: int | None = None) -> bool:
    """Whether both stores keep ``value`` as it is: no NUL, no lone surrogate, and (when given) at most its column's
    ``max_length`` characters. The CDS face checks every string it stores at the edge with this rule; the replay
    store checks the ``jti`` itself."""
    return (max_length is None or len(value) <= max_length) and not _UNSTORABLE.search(value)


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

"""The audit log: one JSON line per service call. Patient ids are hashed; tokens never appear."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class AuditEvent(StrEnum):
    """The events of the audit log (its ``event`` field)."""

    SERVICE_CALL = "service_call"
    AUTH_REJECTED = "auth_rejected"
    BAD_REQUEST = "bad_request"
    FEEDBACK = "feedback"
    FEEDBACK_REFUSED = "feedback_refused"


class LogEvent(StrEnum):
    """The events of the service's own log (not the audit log): what an operator acts on."""

    JWKS_UNAVAILABLE = "jwks_unavailable"
    INTERNAL_ERROR = "internal_error"


logger = logging.getLogger("ketamine_cds.audit")
#: Who else reads each audit event (the composition root's metrics): one event stream, two views.
_observers: list[Callable[[AuditEvent, dict[str, Any]], None]] = []


def add_observer(observer: Callable[[AuditEvent, dict[str, Any]], None]) -> None:
    """Call ``observer(event, fields)`` for every audit event (once per observer, however often it is added)."""
    if observer not in _observers:
        _observers.append(observer)


def patient_hash(patient_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()[:16]


def bounded(value: object, limit: int = 80) -> str | None:
    """A caller-supplied string for the log: as it is when short, else its start and a hash (so that equal values
    still group), so that an unauthenticated caller cannot write kilobytes into the audit log per request."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}…#{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def audit(event: AuditEvent, **fields: Any) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event.value, **fields}
    logger.info(json.dumps(record, separators=(",", ":"), default=str))
    for observer in _observers:
        observer(event, fields)

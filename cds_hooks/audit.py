"""The audit log: one JSON line per service call. Patient ids are hashed; tokens never appear."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

logger = logging.getLogger("ketamine_cds.audit")


def patient_hash(patient_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()[:16]


def audit(event: str, **fields: Any) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    logger.info(json.dumps(record, separators=(",", ":"), default=str))

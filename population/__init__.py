"""Population screening: the order-time rules over a whole Bulk FHIR export (``ketamine-cds screen``).

A face like the CDS service and the SMART app: it reads FHIR through ``fhir_mapping`` and asks ``eligibility`` for
each patient's assessment; it never implements a rule of its own.
"""

from .bucket import PatientResult, assess_bucket, assess_patient, pseudonym, worklist_row
from .inventory import RULE_TYPES, BulkFile, FileKind, Inventory, scan
from .partition import KEY_SQL, Partitioned, key_sql_function, partition
from .screen import Interrupted, ScreenError, ScreenOptions, run_screen

__all__ = [
    "KEY_SQL",
    "RULE_TYPES",
    "BulkFile",
    "FileKind",
    "Interrupted",
    "Inventory",
    "Partitioned",
    "PatientResult",
    "ScreenError",
    "ScreenOptions",
    "assess_bucket",
    "assess_patient",
    "key_sql_function",
    "partition",
    "pseudonym",
    "run_screen",
    "scan",
    "worklist_row",
]

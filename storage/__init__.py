"""Shared state behind one interface: issued cards and feedback, the JWT replay store, SMART launches and logins,
cards already shown (order-sign de-duplication) and the service's own secrets.

One implementation over SQLAlchemy Core serves both backends: the embedded SQLite file (the default; the demo and a
single machine need nothing else) and PostgreSQL (several replicas). The faces depend on :class:`Storage`, never on a
driver. See ``docs/deployment.md`` for why SQLAlchemy Core and Alembic.
"""

from .errors import CardNotIssued, SchemaBehind, StorageError, StorageUnavailable, TooManyPending
from .records import FeedbackRecord, IssuedCard, storable
from .sealing import Sealer, load_or_create_key
from .store import (
    Sealed,
    Storage,
    browser_digest,
    open_storage,
    same_browser,
    schema_status,
    upgrade_schema,
)

__all__ = [
    "CardNotIssued",
    "FeedbackRecord",
    "IssuedCard",
    "SchemaBehind",
    "Sealed",
    "Sealer",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TooManyPending",
    "browser_digest",
    "load_or_create_key",
    "open_storage",
    "same_browser",
    "schema_status",
    "storable",
    "upgrade_schema",
]

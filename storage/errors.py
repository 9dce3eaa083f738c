"""What can go wrong with shared state, as types the faces translate (503, 409, a start-up refusal)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the storage errors."""


class StorageUnavailable(StorageError):
    """The database did not answer in time. Requests answer 503 and the store recovers on its own."""


class SchemaBehind(StorageError):
    """The database schema is older than this release: run ``ketamine-cds migrate``."""

    def __init__(self, message: str, current: str | None = None, head: str | None = None) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


class TooManyPending(StorageError):
    """As many SMART launches are pending (started, not yet completed or expired) as the store keeps: anyone may
    start a launch, so their number is capped rather than left to fill the database. The caller answers 503."""


class CardNotIssued(StorageError):
    """Feedback named a card this service did not issue to this client."""

    def __init__(self, card_uuid: str) -> None:
        super().__init__(card_uuid)
        self.card_uuid = card_uuid

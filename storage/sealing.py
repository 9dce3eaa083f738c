"""Secrets at rest (SMART tokens, PKCE verifiers) sealed with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``): a copy of the database alone does not give anyone an EHR access token."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from .errors import StorageError


class Sealer:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise StorageError("the encryption key is not a Fernet key (32 url-safe base64-encoded bytes)") from exc

    def seal(self, payload: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode())

    def open(self, sealed: bytes) -> dict[str, Any] | None:
        """The payload, or None when it was sealed under another key (a rotated key ends old logins)."""
        try:
            value = json.loads(self._fernet.decrypt(sealed))
        except (InvalidToken, ValueError):
            return None
        return value if isinstance(value, dict) else None


def load_or_create_key(path: Path, *, create: bool) -> bytes:
    """The key in ``path``; with ``create``, a new random key written there (0600) when the file does not exist."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            raise StorageError(f"encryption key file {path} does not exist") from None
    except OSError as exc:
        raise StorageError(f"encryption key file {path}: cannot read ({exc.__class__.__name__})") from exc
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_bytes().strip()
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key

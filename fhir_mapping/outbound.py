"""The outbound HTTP clients (FHIR servers, JWKS, token endpoints, Bulk Data): every one shares a single TLS context.

httpx builds a new ``ssl.SSLContext`` for each client it creates, and building one parses the whole CA bundle
(about 30 ms of CPU). The service creates clients at start-up, for a JWKS fetch without a shared client, for each
FHIR fetch without one and for each Bulk export; the test suite creates hundreds. One context, built once per
process the way httpx builds its default (``httpx.create_ssl_context``: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when
set, else certifi's bundle), verifies exactly as before. An ``SSLContext`` may be shared by clients, threads and
event loops: wrapping a socket reads it, never changes it.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context for outbound calls (certificate and host name verified)."""
    return httpx.create_ssl_context()


def http_client(**options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with ``options`` that verifies servers with the shared context (``verify`` given in
    ``options`` wins: a test's own certificate authority, say)."""
    options.setdefault("verify", tls_context())
    return httpx.AsyncClient(**options)

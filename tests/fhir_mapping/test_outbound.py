"""The outbound clients share one TLS context and still verify every server: a self-signed certificate is refused
by the shared context, and trusted only by a client given its own."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fhir_mapping.outbound import http_client, tls_context

from ..conftest import free_port
from ..stack import serving
from ..tls import self_signed

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def test_the_context_is_built_once_and_verifies_certificates_and_host_names() -> None:
    assert tls_context() is tls_context()
    assert tls_context().verify_mode is ssl.CERT_REQUIRED and tls_context().check_hostname


async def test_a_self_signed_server_is_refused_by_the_shared_context_and_trusted_with_its_own(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    app = Starlette(routes=[Route("/metadata", lambda request: PlainTextResponse("ok"))])
    with serving(app, port, ssl_certfile=str(cert), ssl_keyfile=str(key)):
        url = f"https://127.0.0.1:{port}/metadata"
        async with http_client(timeout=5) as shared:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await shared.get(url)
        async with http_client(timeout=5, verify=ssl.create_default_context(cafile=str(cert))) as own:
            assert (await own.get(url)).text == "ok"
        async with http_client(timeout=5) as shared_again:  # the other client's trust did not leak into the context
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await shared_again.get(url)

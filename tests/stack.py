"""The whole product on loopback for end-to-end tests: our app (CDS service + SMART app) and the sandbox EHR, served
by uvicorn in a thread on 127.0.0.1, and a browser-like httpx client that follows redirects and submits the
authorize-post form the way a browser's script would."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ehr_sandbox import Sandbox, SandboxClient, SandboxConfig
from fhir_mapping.outbound import tls_context
from ketamine_cds.app import create_app
from ketamine_cds.demo import FIXTURES, demo_settings
from ketamine_cds.settings import Settings

from .conftest import free_port

TODAY = dt.date(2026, 11, 1)


@dataclass
class Stack:
    base: str
    app: Any
    sandbox: Sandbox
    settings: Settings

    @property
    def fhir(self) -> str:
        return self.base + "/sandbox/fhir"

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, follow_redirects=True, timeout=30, verify=tls_context())


@contextmanager
def serving(app: Any, port: int, **config: Any) -> Iterator[uvicorn.Server]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1 until the block ends (``config``: ssl files, log
    level, lifespan …)."""
    # At the end, requests still in flight (a fault server's endless answer, a stalled stream) are cut after a
    # second instead of being waited for.
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 1, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))

    async def serve() -> None:
        await server.serve()
        # uvicorn cancels the requests it cut but leaves their sockets open; closed here, on their own loop, they
        # do not surface later as another test's ResourceWarning.
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()  # close() would wait to flush what a stalled peer never reads
        await asyncio.sleep(0.05)  # the transports' connection_lost callbacks run

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def running_stack(work: Path, *, client: SandboxClient | None = None, configure: Any = None,
                  **sandbox_options: Any) -> Iterator[Stack]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(SandboxConfig(
        public_base_url=base, data_dir=work / "sandbox", fixtures=FIXTURES, app_launch_url=f"{base}/smart/launch",
        app_clients=[client or SandboxClient("ketamine-cds", [f"{base}/smart/callback"], "none")],
        **sandbox_options))
    settings = demo_settings(base, work)
    if configure is not None:
        configure(settings)
    app = create_app(settings, sandbox=sandbox.app, on_startup=[sandbox.load_fixtures], today=lambda: TODAY,
                     configure_logging=False)
    try:
        with serving(app, port):
            yield Stack(base, app, sandbox, settings)
    finally:
        app.state.storage.close()


def submit_authorize_form(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    """What the page's script does: POST the authorize form (servers with authorize-post)."""
    form = re.search(r'<form method="post" action="([^"]+)" id="authorize">(.*?)</form>', response.text, re.S)
    if form is None:
        return response
    fields = {html.unescape(k): html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"',
                                                                          form.group(2))}
    return browser.post(html.unescape(form.group(1)), data=fields)


def launch_from_chart(stack: Stack, browser: httpx.Client, patient: str, **extra: str) -> httpx.Response:
    """Click "Launch app" in the sandbox chart and follow the iframe's launch to the end."""
    chart = browser.post("/sandbox/launch", data={"patient": patient, **extra})
    src = html.unescape(re.search(r'id="app-frame" src="([^"]+)"', chart.text).group(1))  # type: ignore[union-attr]
    return submit_authorize_form(browser, browser.get(src))


def text_of(page: httpx.Response) -> str:
    body = re.sub(r"<(style|script|svg).*?</\1>", " ", page.text, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))

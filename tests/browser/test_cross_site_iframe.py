"""The SMART app inside an EHR iframe on another site, in a real browser: the chart on https://localhost, the app on
https://127.0.0.1 (different sites to Chromium), one self-signed certificate for both. The app's browser-binding
cookie is third-party there; Chromium keeps it only when it is Partitioned (CHIPS)."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.responses import Response

from ehr_sandbox import Sandbox, SandboxClient, SandboxConfig
from ketamine_cds.app import create_app
from ketamine_cds.demo import FIXTURES
from ketamine_cds.settings import CdsClientSettings, CdsSettings, Settings, SmartSettings
from smart_app import routes

from ..conftest import free_port
from ..stack import serving
from ..tls import self_signed
from .chromium import launch, needs_chromium

pytestmark = [
    pytest.mark.integration,
    needs_chromium,
]


@dataclass
class Sites:
    ehr: str
    app: str


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    work = tmp_path_factory.mktemp("cross-site")
    cert, key = self_signed(work)
    port = free_port()
    ehr, app_base = f"https://localhost:{port}", f"https://127.0.0.1:{port}"
    sandbox = Sandbox(SandboxConfig(
        public_base_url=ehr, data_dir=work / "sandbox", fixtures=FIXTURES, app_launch_url=f"{app_base}/smart/launch",
        app_clients=[SandboxClient("ketamine-cds", [f"{app_base}/smart/callback"], "none")]))
    settings = Settings(
        cds=CdsSettings(public_base_url=app_base, feedback_db=work / "feedback.sqlite3", audit_salt="x" * 32,
                        clients=[CdsClientSettings(issuer=f"{ehr}/sandbox",
                                                   jwks_url=f"{ehr}/sandbox/cds-client/jwks.json")]),
        smart=SmartSettings(client_id="ketamine-cds", allowed_issuers=[f"{ehr}/sandbox/fhir"], frame_ancestors=[ehr]))
    # The app's own calls to the EHR (discovery, token, FHIR) trust the test certificate.
    http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)), timeout=20)
    app = create_app(settings, sandbox=sandbox.app, on_startup=[sandbox.load_fixtures], http=http,
                     today=lambda: dt.date(2026, 11, 1), configure_logging=False)
    try:
        with serving(app, port, ssl_certfile=str(cert), ssl_keyfile=str(key)):
            yield Sites(ehr, app_base)
    finally:
        app.state.storage.close()


def _launch_in_chart(sites: Sites) -> str:
    """Open the chart on the EHR's site, launch the app in its iframe, and return the iframe's final text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.goto(f"{sites.ehr}/sandbox/?patient=kc-11")
            page.click("#launch-app")
            frame = page.frame_locator("#app-frame")
            heading = frame.locator("h1, #verdict").first
            heading.wait_for(timeout=20_000)
            page.wait_for_timeout(500)
            return str(frame.locator("body").inner_text())
        finally:
            browser.close()


def test_the_app_in_a_cross_site_ehr_iframe_completes_its_launch(sites: Sites) -> None:
    assert httpx.URL(sites.ehr).host != httpx.URL(sites.app).host  # two sites to the browser
    text = _launch_in_chart(sites)
    assert "belongs to another browser" not in text
    assert "Contraindicated" in text and "Uncontrolled hypertension" in text


def test_without_partitioned_the_cookie_is_dropped_and_the_launch_fails(
        sites: Sites, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: the same launch with a SameSite=None; Secure cookie that is not Partitioned.
    def unpartitioned(options: routes.SmartOptions, response: Response, browser: str) -> None:
        response.set_cookie(routes.BROWSER_COOKIE, browser, httponly=True, secure=True, samesite="none",
                            path="/smart", max_age=3600)

    monkeypatch.setattr(routes, "_set_browser_cookie", unpartitioned)
    assert "belongs to another browser" in _launch_in_chart(sites)

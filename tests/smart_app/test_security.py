"""Security headers and cookies that depend on configuration."""

from __future__ import annotations

import datetime as dt

import httpx
from starlette.responses import Response

from ketamine_cds.app import smart_options
from ketamine_cds.settings import Settings
from smart_app import SmartOptions, csp
from smart_app.routes import _set_browser_cookie
from storage import Storage


def options(base: str, ancestors: list[str] | None = None) -> SmartOptions:
    # Headers and cookies only: the store and the EHR are never reached (an unopened store and a client that
    # answers nothing keep the test free of I/O).
    settings = Settings.model_validate({"cds": {"public_base_url": base},
                                        "smart": {"redirect_uri": base + "/cb", "frame_ancestors": ancestors or []}})
    nowhere = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(599)))
    return smart_options(settings, storage=Storage.__new__(Storage), http=nowhere, today=dt.date.today)


def test_over_https_the_cookie_works_inside_an_ehr_iframe() -> None:
    response = Response()
    _set_browser_cookie(options("https://cds.example.org"), response, "opaque")
    cookie = response.headers["set-cookie"].lower()
    assert "samesite=none" in cookie and "secure" in cookie and "httponly" in cookie and "partitioned" in cookie


def test_over_plain_http_the_cookie_is_lax_and_not_secure() -> None:
    response = Response()
    _set_browser_cookie(options("http://127.0.0.1:8000"), response, "opaque")
    cookie = response.headers["set-cookie"].lower()
    assert "samesite=lax" in cookie and "secure" not in cookie


def test_frame_ancestors_come_from_configuration() -> None:
    policy = csp(["https://ehr.example.org", "https://ehr2.example.org"], "n0nce")
    assert "frame-ancestors 'self' https://ehr.example.org https://ehr2.example.org" in policy
    assert "script-src 'nonce-n0nce'" in policy and "default-src 'none'" in policy and "base-uri 'none'" in policy

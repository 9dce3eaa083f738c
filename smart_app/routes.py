"""The SMART app's HTTP face: launch, callback, the review page, sign-out, and our JWKS. The routes are thin: the
launch and its callback are ``launches``' functions, the review is ``review.load_review``; a problem any of them
raises (``errors``: the tree of ``SmartProblem``) is one page, rendered by :func:`problem_handler`.

Tokens stay on the server; every response carries a CSP with ``frame-ancestors`` from configuration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from eligibility import (
    Policy,
    available_policies,
    contraindication_label,
    course_summary,
    gap_sentences,
    load_policy,
)
from fhir_mapping import ClientSettings, FhirClient

from .charts import bp_svg, timeline_svg
from .errors import LaunchOutcome, SmartProblem
from .findings import ago, band, checklist, decisive_findings, evidence_details, references
from .launches import card_section, complete_launch, ensure_fresh, start_launch
from .logins import Login
from .oauth import granted_types
from .options import SmartOptions as SmartOptions  # where the routes' callers have always found it
from .review import load_review

BROWSER_COOKIE = "kcds_browser"
_TEMPLATES = Environment(loader=PackageLoader("smart_app", "templates"), autoescape=select_autoescape())
_SAFE_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|rgba?\([0-9., %]+\)|[a-zA-Z]{3,20})$")
_SAFE_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
_SAFE_DIM = re.compile(r"^[0-9.]{1,6}(px|rem|em|%)$")


def csp(frame_ancestors: list[str], nonce: str, form_action: str = "'self'") -> str:
    ancestors = " ".join(["'self'", *frame_ancestors])
    return (f"default-src 'none'; img-src 'self' data:; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            f"form-action {form_action}; base-uri 'none'; frame-ancestors {ancestors}")


def _page(options: SmartOptions, name: str, status: int = 200, form_action: str = "'self'",
          **values: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _TEMPLATES.get_template(name).render(nonce=nonce, **values)
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": csp(options.frame_ancestors, nonce, form_action),
        "Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"})


def problem_page(options: SmartOptions, title: str, message: str, status: int) -> HTMLResponse:
    return _page(options, "problem.html", status=status, title=title, message=message)


def _set_browser_cookie(options: SmartOptions, response: Response, browser: str) -> None:
    # Inside an EHR iframe the cookie is third-party: SameSite=None, which browsers accept only with Secure (https),
    # and Partitioned (CHIPS), without which Chromium drops third-party cookies: the callback would then find no
    # binding cookie. Starlette writes Partitioned only on Python >= 3.14, so the header is written here.
    # On plain-http loopback (the demo, same origin as its sandbox) Lax is the strictest setting that works.
    if options.secure:
        response.headers.append(
            "set-cookie", f"{BROWSER_COOKIE}={browser}; HttpOnly; Max-Age={12 * 3600}; Path=/smart; SameSite=None; "
                          "Secure; Partitioned")
    else:
        response.set_cookie(BROWSER_COOKIE, browser, httponly=True, secure=False, samesite="lax", path="/smart",
                            max_age=12 * 3600)


async def _style(http: httpx.AsyncClient, url: str | None) -> dict[str, str]:
    """The EHR's smart_style_url, keeping only values that cannot inject CSS."""
    if not url or not url.startswith(("https://", "http://")):
        return {}
    try:
        data = (await http.get(url, timeout=2.0)).json()
    except (httpx.HTTPError, ValueError):
        return {}
    style = {}
    for key, value in data.items() if isinstance(data, dict) else []:
        if not isinstance(value, str):
            continue
        if (key.startswith("color_") and _SAFE_COLOR.match(value)) or (
                key.startswith("font_family_") and _SAFE_FONT.match(value)) or (
                key.startswith("dim_") and _SAFE_DIM.match(value)):
            style[key] = value
    return style


def problem_handler(options: SmartOptions) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The one exception handler of the SMART app (the composition root registers it for :class:`SmartProblem`):
    every problem a route raises becomes its page."""
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SmartProblem)
        page = problem_page(options, exc.title, exc.message, exc.status)
        if exc.retry_after_s is not None:
            page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    return handle


def build_router(options: SmartOptions) -> APIRouter:
    router = APIRouter(prefix="/smart")
    http, store = options.http, options.store

    @router.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(options.credentials.public_jwks(), headers={"Cache-Control": "max-age=300"})

    @router.get("/launch")
    async def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
        started = await start_launch(options, iss=iss, launch=launch, binding=request.cookies.get(BROWSER_COOKIE))
        response: Response
        if started.by_post:
            endpoint = started.config.authorization_endpoint
            response = _page(options, "authorize_post.html", action=endpoint, params=started.params,
                             form_action=f"'self' {_origin(endpoint)}")
        else:
            response = RedirectResponse(started.url, status_code=302, headers={"Cache-Control": "no-store"})
        _set_browser_cookie(options, response, started.binding)
        return response

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        try:
            login = await complete_launch(options, request.query_params, request.cookies.get(BROWSER_COOKIE))
        except SmartProblem as exc:
            _report(exc.outcome)
            raise
        _report(LaunchOutcome.COMPLETED)
        # Opened from a card: land on that card's section (a fragment, so no script is needed to scroll).
        section = card_section(login.app_context)
        return RedirectResponse(f"/smart/app/{login.id}" + (f"#{section}" if section else ""), status_code=303,
                                headers={"Cache-Control": "no-store"})

    def _report(outcome: LaunchOutcome) -> None:
        if options.on_launch is not None:
            options.on_launch(outcome)

    @router.get("/app/{login_id}")
    async def review(login_id: str, request: Request, policy: str | None = None) -> Response:
        login = await _login(login_id, request, "Relaunch the app from the EHR.")
        if login.patient is None:
            raise SmartProblem("No patient in context",
                               "The EHR did not say which patient to show. Launch the app from a patient's chart.",
                               400)
        login = await ensure_fresh(options, login)
        chosen = policy or str(login.app_context.get("policy") or options.policy)
        if chosen not in available_policies():
            chosen = options.policy
        return await _render(login, load_policy(chosen))

    @router.post("/app/{login_id}/logout")
    async def logout(login_id: str, request: Request, csrf: str = Form("")) -> Response:
        login = await _login(login_id, request, "Nothing to sign out of.")
        if not secrets.compare_digest(login.csrf, csrf) or request.headers.get("sec-fetch-site") == "cross-site":
            raise SmartProblem("Request refused", "The form was not sent from this app.", 403)
        await store.end_login(login_id)
        return problem_page(options, "Signed out", "The app forgot this sign-in and its tokens.", 200)

    async def _login(login_id: str, request: Request, advice: str) -> Login:
        login = await store.login(login_id, request.cookies.get(BROWSER_COOKIE))
        if login is None:
            raise SmartProblem("Your sign-in has ended", advice, 401)
        return login

    async def _render(login: Login, policy: Policy) -> Response:
        client = FhirClient(login.iss, token=login.access_token, http=http,
                            settings=ClientSettings(budget_s=options.fhir_budget_s))
        as_of = options.today()
        if login.app_context.get("asOf"):
            with contextlib.suppress(ValueError):  # a malformed asOf falls back to today
                as_of = dt.date.fromisoformat(str(login.app_context["asOf"]))
        review = await load_review(client, str(login.patient), granted_types(login.scope), policy, as_of)
        assessment, facts = review.assessment, review.facts
        style = await _style(http, login.smart_style_url)
        refs = references(policy)
        summary = login.app_context.get("summary")
        return _page(
            options, "review.html",
            login=login, policy=policy, policies=available_policies(), a=assessment, facts=facts,
            style=style, not_authorized=review.not_authorized, failed=review.failed,
            reports=review.reports, horizon=policy.observation_horizon(as_of),
            findings=decisive_findings(assessment, policy), rows=checklist(assessment, policy),
            details=evidence_details(facts), refs=refs, ref_numbers={s.id: i for i, s in enumerate(refs, 1)},
            ago=ago, band=band, server=urlsplit(login.iss).netloc or login.iss,
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            card_summary=summary[:140] if isinstance(summary, str) else None,
            card_section=card_section(login.app_context),
            timeline=timeline_svg(assessment.treatment_resistance.trials, facts.scores, as_of,
                                  policy.thresholds.severity_phq9_min, assessment.course),
            course_line=course_summary(assessment.course) if assessment.course else None,
            bp_chart=bp_svg(facts.blood_pressures, as_of, policy.thresholds.bp_systolic_above,
                            policy.thresholds.bp_diastolic_above),
            label=contraindication_label, base=options.public_base_url, gap_words=gap_sentences(assessment.gaps))

    return router


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"

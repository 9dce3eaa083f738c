"""The SMART app's HTTP face: launch, callback, the review page, sign-out, and our JWKS.

Errors a user can act on (a denied consent, a reused state, an expired launch, a FHIR server that is down) get a
clear page; tokens stay on the server; every response carries a CSP with ``frame-ancestors`` from configuration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
import time
from dataclasses import dataclass, field
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
from storage import TooManyPending, same_browser

from .charts import bp_svg, timeline_svg
from .discovery import SmartConfigurations
from .findings import ago, band, checklist, decisive_findings, evidence_details, references
from .logins import LaunchRecord, Login, Store
from .oauth import (
    ClientCredentials,
    OAuthProblem,
    authorization_params,
    authorization_url,
    granted_types,
    new_state,
    pkce_pair,
    requested_scopes,
    token_request,
    validate_id_token,
)
from .review import ReviewProblem, load_review

BROWSER_COOKIE = "kcds_browser"
#: The binding cookie as this app mints it (``secrets.token_urlsafe(32)``: 43 characters); any other value a request
#: carries is replaced, never echoed back or trusted.
_BROWSER_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: The longest ``launch`` value carried to the EHR. SMART leaves it opaque; EHRs send ids or tokens far shorter,
#: and it is stored with the pending launch, so its size is bounded before anything is stored or fetched.
MAX_LAUNCH_LENGTH = 2048
#: How much of a refused ``iss`` a page repeats (the rest is anyone's to write).
_SHOWN_ISS = 200
# RFC 6749 §4.1.2.1: the error codes an authorization response may carry (shown by name; anything else is not).
_OAUTH_ERRORS = {"invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
                 "invalid_scope", "server_error", "temporarily_unavailable"}
_TEMPLATES = Environment(loader=PackageLoader("smart_app", "templates"), autoescape=select_autoescape())
_SAFE_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|rgba?\([0-9., %]+\)|[a-zA-Z]{3,20})$")
_SAFE_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
_SAFE_DIM = re.compile(r"^[0-9.]{1,6}(px|rem|em|%)$")


@dataclass
class SmartOptions:
    public_base_url: str
    credentials: ClientCredentials
    redirect_uri: str
    allowed_issuers: list[str]
    store: Store
    frame_ancestors: list[str] = field(default_factory=list)
    default_iss: str | None = None
    offline_access: bool = False
    policy: str = "default"
    fhir_budget_s: float = 10.0
    http: httpx.AsyncClient | None = None
    #: Called with each launch's result (completed, denied, refused, expired, failed): the metrics' feed.
    on_launch: Any = None
    today: Any = dt.date.today

    @property
    def secure(self) -> bool:
        return self.public_base_url.startswith("https://")

    def issuer_allowed(self, iss: str) -> bool:
        return iss.rstrip("/") in {i.rstrip("/") for i in self.allowed_issuers}


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


def _fhir_context(raw: Any) -> list[dict[str, Any]]:
    """fhirContext as objects: SMART 2.1+ sends objects, 2.0 sent strings (references)."""
    items = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, str):
            items.append({"reference": item})
        elif isinstance(item, dict):
            items.append(item)
    return items


def _app_context(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def build_router(options: SmartOptions) -> APIRouter:
    router = APIRouter(prefix="/smart")
    http = options.http or httpx.AsyncClient(timeout=10.0)
    store = options.store
    configurations = SmartConfigurations(http)

    @router.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(options.credentials.public_jwks(), headers={"Cache-Control": "max-age=300"})

    @router.get("/launch")
    async def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
        iss = iss or options.default_iss
        if not iss:
            return problem_page(options, "No EHR given", "Launch this app from your EHR, or configure a default "
                                "FHIR server for standalone launch.", 400)
        if not options.issuer_allowed(iss):
            shown = iss if len(iss) <= _SHOWN_ISS else iss[:_SHOWN_ISS] + "…"
            return problem_page(options, "This EHR is not allowed",
                                f"The app was launched from {shown}, which is not on this installation's list of "
                                "allowed FHIR servers. Ask IT to add it if it should be.", 403)
        if launch is not None and len(launch) > MAX_LAUNCH_LENGTH:
            return problem_page(options, "The EHR's launch cannot be used",
                                f"Its launch value is longer than this app accepts ({MAX_LAUNCH_LENGTH} "
                                "characters). Relaunch the app from the EHR; if it persists, tell IT.", 400)
        try:
            config = await configurations.get(iss)
        except OAuthProblem as exc:
            return problem_page(options, exc.title, exc.message, exc.status)
        cookie = request.cookies.get(BROWSER_COOKIE, "")
        browser = cookie if _BROWSER_VALUE.match(cookie) else secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        state, nonce = new_state(), secrets.token_urlsafe(16)
        scope = requested_scopes(config, ehr_launch=launch is not None, offline=options.offline_access)
        try:
            await store.add_launch(LaunchRecord(state, browser, iss, launch, verifier, nonce, scope, config))
        except TooManyPending:
            page = problem_page(options, "Too many sign-ins are in progress",
                                "The app is not starting new sign-ins for a moment. Relaunch it from the EHR in a "
                                "minute; if it persists, tell IT.", 503)
            page.headers["Retry-After"] = "60"
            return page
        params = authorization_params(config, client_id=options.credentials.client_id,
                                      redirect_uri=options.redirect_uri, scope=scope, state=state, aud=iss,
                                      challenge=challenge, launch=launch, nonce=nonce)
        response: Response
        if config.authorize_post:
            response = _page(options, "authorize_post.html", action=config.authorization_endpoint, params=params,
                             form_action=f"'self' {_origin(config.authorization_endpoint)}")
        else:
            response = RedirectResponse(authorization_url(config, params), status_code=302)
            response.headers["Cache-Control"] = "no-store"
        _set_browser_cookie(options, response, browser)
        return response

    def launch_result(response: Response) -> Response:
        if options.on_launch is not None:
            status = response.status_code
            options.on_launch("completed" if status == 303 else "denied" if status == 403 else
                              "refused" if status < 500 else "failed")
        return response

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        return launch_result(await _callback(request))

    async def _callback(request: Request) -> Response:
        q = request.query_params
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if q.get("error"):
            # Checked first: an error redirect carries no code (and a denied consent is not a crash). Only our own
            # words are shown: the URL's error_description is the redirect's, anyone's, to write.
            if q.get("state"):
                await store.take_launch(q["state"], browser)
            if q["error"] == "access_denied":
                return problem_page(options, "Access was not granted",
                                    "The EHR reports that access was denied. Relaunch the app to try again.", 403)
            known = q["error"] if q["error"] in _OAUTH_ERRORS else "an error"
            return problem_page(options, "The EHR could not authorize the app",
                                f"The EHR answered with {known}. Relaunch the app; if it persists, ask IT to check "
                                "this app's registration.", 400)
        record = await store.peek_launch(q.get("state", "")) if q.get("state") else None
        if record is None:
            return problem_page(options, "This sign-in link is not valid",
                                "The launch was already used, or it is unknown to this app. Relaunch the app from "
                                "the EHR.", 400)
        if not same_browser(record.browser, browser):
            # Not spent: the browser that started the launch can still complete it.
            return problem_page(options, "This sign-in belongs to another browser",
                                "It was started in another browser or browser profile. Relaunch the app from the "
                                "EHR.", 400)
        record = await store.take_launch(record.state, browser)
        if record is None:
            return problem_page(options, "This sign-in link is not valid",
                                "The launch was already used. Relaunch the app from the EHR.", 400)
        if time.time() - record.created > store.launch_ttl_s:
            return problem_page(options, "The launch has expired", "Relaunch the app from the EHR.", 400)
        code = q.get("code")
        if not code:
            return problem_page(options, "The EHR sent no authorization code", "Relaunch the app.", 400)
        try:
            token = await token_request(http, record.config, options.credentials, {
                "grant_type": "authorization_code", "code": code, "redirect_uri": options.redirect_uri,
                "code_verifier": record.verifier})
            granted = str(token.get("scope") or record.scope)
            claims: dict[str, Any] = {}
            if "openid" in granted.split() and token.get("id_token"):
                claims = await validate_id_token(http, record.config, str(token["id_token"]),
                                                 options.credentials.client_id, record.nonce)
        except OAuthProblem as exc:
            return problem_page(options, exc.title, exc.message, exc.status)
        login = Login(
            id=secrets.token_urlsafe(24), browser=record.browser, iss=record.iss, config=record.config,
            access_token=str(token["access_token"]), expires_at=time.time() + float(token.get("expires_in", 300)),
            refresh_token=token.get("refresh_token"), scope=granted, patient=token.get("patient"),
            encounter=token.get("encounter"), fhir_context=_fhir_context(token.get("fhirContext")),
            need_patient_banner=token.get("need_patient_banner", True) is not False,
            smart_style_url=token.get("smart_style_url"), intent=token.get("intent"), tenant=token.get("tenant"),
            app_context=_app_context(token.get("appContext")), id_claims=claims)
        await store.save_login(login)
        # Opened from a card: land on that card's section (a fragment, so no script is needed to scroll).
        section = _card_section(login.app_context)
        return RedirectResponse(f"/smart/app/{login.id}" + (f"#{section}" if section else ""), status_code=303,
                                headers={"Cache-Control": "no-store"})

    @router.get("/app/{login_id}")
    async def review(login_id: str, request: Request, policy: str | None = None) -> Response:
        login = await store.login(login_id, request.cookies.get(BROWSER_COOKIE))
        if login is None:
            return problem_page(options, "Your sign-in has ended", "Relaunch the app from the EHR.", 401)
        if login.patient is None:
            return problem_page(options, "No patient in context",
                                "The EHR did not say which patient to show. Launch the app from a patient's chart.",
                                400)
        try:
            await _ensure_fresh(login)
        except OAuthProblem as exc:
            return problem_page(options, exc.title, exc.message, exc.status)
        chosen = policy or str(login.app_context.get("policy") or options.policy)
        if chosen not in available_policies():
            chosen = options.policy
        return await _render(login, load_policy(chosen))

    @router.post("/app/{login_id}/logout")
    async def logout(login_id: str, request: Request, csrf: str = Form("")) -> Response:
        login = await store.login(login_id, request.cookies.get(BROWSER_COOKIE))
        if login is None:
            return problem_page(options, "Your sign-in has ended", "Nothing to sign out of.", 401)
        if not secrets.compare_digest(login.csrf, csrf) or request.headers.get("sec-fetch-site") == "cross-site":
            return problem_page(options, "Request refused", "The form was not sent from this app.", 403)
        await store.end_login(login_id)
        return problem_page(options, "Signed out", "The app forgot this sign-in and its tokens.", 200)

    async def _ensure_fresh(login: Login) -> None:
        if login.expires_at - time.time() > 60:
            return
        if not login.refresh_token:
            raise OAuthProblem("Your access has expired", "Relaunch the app from the EHR.", 401)
        token = await token_request(http, login.config, options.credentials,
                                    {"grant_type": "refresh_token", "refresh_token": login.refresh_token})
        login.access_token = str(token["access_token"])
        login.expires_at = time.time() + float(token.get("expires_in", 300))
        login.refresh_token = token.get("refresh_token") or login.refresh_token
        login.scope = str(token.get("scope") or login.scope)
        login.refreshed += 1
        await store.save_login(login)

    async def _render(login: Login, policy: Policy) -> Response:
        client = FhirClient(login.iss, token=login.access_token, http=http,
                            settings=ClientSettings(budget_s=options.fhir_budget_s))
        as_of = options.today()
        if login.app_context.get("asOf"):
            with contextlib.suppress(ValueError):  # a malformed asOf falls back to today
                as_of = dt.date.fromisoformat(str(login.app_context["asOf"]))
        try:
            review = await load_review(client, str(login.patient), granted_types(login.scope), policy, as_of)
        except ReviewProblem as exc:
            return problem_page(options, exc.title, exc.message, exc.status)
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
            card_section=_card_section(login.app_context),
            timeline=timeline_svg(assessment.treatment_resistance.trials, facts.scores, as_of,
                                  policy.thresholds.severity_phq9_min, assessment.course),
            course_line=course_summary(assessment.course) if assessment.course else None,
            bp_chart=bp_svg(facts.blood_pressures, as_of, policy.thresholds.bp_systolic_above,
                            policy.thresholds.bp_diastolic_above),
            label=contraindication_label, base=options.public_base_url, gap_words=gap_sentences(assessment.gaps))

    return router


#: The sections a card may send the user to (appContext comes through the EHR: only these names are used).
_SECTIONS = frozenset({"verdict", "course", "warnings", "workup", "trials", "bp", "checklist"})


def _card_section(app_context: dict[str, Any]) -> str | None:
    section = app_context.get("section")
    return section if isinstance(section, str) and section in _SECTIONS else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


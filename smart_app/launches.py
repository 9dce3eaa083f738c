"""The launch and its callback, as plain functions: what to send the browser to, and the login a callback leaves.
No HTTP of its own (the routes turn the results into a redirect or a page, the problems into pages); a test calls
these with a store and an EHR's answers.

A launch is bound to the browser that started it by an opaque cookie (the browser's *binding*), stored server-side
with its PKCE verifier and nonce, and spent once by the callback from that same browser.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage import TooManyPending, same_browser

from .errors import LaunchOutcome, LaunchProblem, OAuthProblem
from .logins import LaunchRecord, Login
from .oauth import (
    SmartConfiguration,
    authorization_params,
    authorization_url,
    new_state,
    pkce_pair,
    requested_scopes,
    token_request,
    validate_id_token,
)
from .options import SmartOptions

#: The longest ``launch`` value carried to the EHR. SMART leaves it opaque; EHRs send ids or tokens far shorter,
#: and it is stored with the pending launch, so its size is bounded before anything is stored or fetched.
MAX_LAUNCH_LENGTH = 2048
#: The binding cookie as this app mints it (``secrets.token_urlsafe(32)``: 43 characters); any other value a request
#: carries is replaced, never echoed back or trusted.
_BINDING = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: How much of a refused ``iss`` a page repeats (the rest is anyone's to write).
_SHOWN_ISS = 200
# RFC 6749 §4.1.2.1: the error codes an authorization response may carry (shown by name; anything else is not).
_OAUTH_ERRORS = frozenset({"invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
                           "invalid_scope", "server_error", "temporarily_unavailable"})
#: The sections a card may send the user to (appContext comes through the EHR: only these names are used).
_SECTIONS = frozenset({"verdict", "course", "warnings", "workup", "trials", "bp", "checklist"})
#: An access token expiring within this many seconds is refreshed before a page uses it (its reads must not outlive
#: it).
_REFRESH_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class Authorization:
    """Where a started launch sends the browser: the EHR's authorization endpoint with these parameters (by POST
    when the EHR advertises ``authorize-post``), with ``binding`` set as the browser's cookie."""

    config: SmartConfiguration
    params: dict[str, str]
    binding: str

    @property
    def by_post(self) -> bool:
        return self.config.authorize_post

    @property
    def url(self) -> str:
        return authorization_url(self.config, self.params)


async def start_launch(options: SmartOptions, *, iss: str | None, launch: str | None,
                       binding: str | None) -> Authorization:
    """Record a launch for ``iss`` (EHR launch with ``launch``, standalone without) from the browser holding
    ``binding`` (a new one when it has none); raises :class:`LaunchProblem` or :class:`OAuthProblem`."""
    iss = iss or options.default_iss
    if not iss:
        raise LaunchProblem("No EHR given", "Launch this app from your EHR, or configure a default FHIR server for "
                            "standalone launch.", 400)
    if not options.issuer_allowed(iss):
        shown = iss if len(iss) <= _SHOWN_ISS else iss[:_SHOWN_ISS] + "…"
        raise LaunchProblem("This EHR is not allowed",
                            f"The app was launched from {shown}, which is not on this installation's list of "
                            "allowed FHIR servers. Ask IT to add it if it should be.", 403)
    if launch is not None and len(launch) > MAX_LAUNCH_LENGTH:
        raise LaunchProblem("The EHR's launch cannot be used",
                            f"Its launch value is longer than this app accepts ({MAX_LAUNCH_LENGTH} characters). "
                            "Relaunch the app from the EHR; if it persists, tell IT.", 400)
    config = await options.configurations.get(iss)
    browser = binding if binding is not None and _BINDING.match(binding) else secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    state, nonce = new_state(), secrets.token_urlsafe(16)
    scope = requested_scopes(config, ehr_launch=launch is not None, offline=options.offline_access)
    try:
        await options.store.add_launch(LaunchRecord(state, browser, iss, launch, verifier, nonce, scope, config))
    except TooManyPending as exc:
        raise LaunchProblem("Too many sign-ins are in progress",
                            "The app is not starting new sign-ins for a moment. Relaunch it from the EHR in a "
                            "minute; if it persists, tell IT.", 503, retry_after_s=60) from exc
    params = authorization_params(config, client_id=options.credentials.client_id,
                                  redirect_uri=options.redirect_uri, scope=scope, state=state, aud=iss,
                                  challenge=challenge, launch=launch, nonce=nonce)
    return Authorization(config, params, browser)


async def complete_launch(options: SmartOptions, query: Mapping[str, str], binding: str | None) -> Login:
    """The EHR's redirect back (``query``) in the browser holding ``binding``: the launch spent, the code exchanged,
    the login stored. Raises a problem whose ``outcome`` says how the launch ended."""
    store, browser = options.store, binding or ""
    if query.get("error"):
        # Checked first: an error redirect carries no code (and a denied consent is not a crash). Only our own
        # words are shown: the URL's error_description is the redirect's, anyone's, to write.
        if query.get("state"):
            await store.take_launch(query["state"], browser)
        if query["error"] == "access_denied":
            raise LaunchProblem("Access was not granted",
                                "The EHR reports that access was denied. Relaunch the app to try again.", 403,
                                outcome=LaunchOutcome.DENIED)
        known = query["error"] if query["error"] in _OAUTH_ERRORS else "an error"
        raise LaunchProblem("The EHR could not authorize the app",
                            f"The EHR answered with {known}. Relaunch the app; if it persists, ask IT to check this "
                            "app's registration.", 400)
    record = await store.peek_launch(query["state"]) if query.get("state") else None
    if record is None:
        raise LaunchProblem("This sign-in link is not valid", "The launch was already used, or it is unknown to "
                            "this app. Relaunch the app from the EHR.", 400)
    if not same_browser(record.browser, browser):
        # Not spent: the browser that started the launch can still complete it.
        raise LaunchProblem("This sign-in belongs to another browser", "It was started in another browser or "
                            "browser profile. Relaunch the app from the EHR.", 400)
    record = await store.take_launch(record.state, browser)
    if record is None:
        raise LaunchProblem("This sign-in link is not valid",
                            "The launch was already used. Relaunch the app from the EHR.", 400)
    if time.time() - record.created > store.launch_ttl_s:
        raise LaunchProblem("The launch has expired", "Relaunch the app from the EHR.", 400,
                            outcome=LaunchOutcome.EXPIRED)
    code = query.get("code")
    if not code:
        raise LaunchProblem("The EHR sent no authorization code", "Relaunch the app.", 400)
    token = await token_request(options.http, record.config, options.credentials, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": options.redirect_uri,
        "code_verifier": record.verifier})
    granted = str(token.get("scope") or record.scope)
    claims: dict[str, Any] = {}
    if "openid" in granted.split() and token.get("id_token"):
        claims = await validate_id_token(options.http, record.config, str(token["id_token"]),
                                         options.credentials.client_id, record.nonce)
    login = Login(
        id=secrets.token_urlsafe(24), browser=record.browser, iss=record.iss, config=record.config,
        access_token=str(token["access_token"]), expires_at=time.time() + float(token["expires_in"]),
        refresh_token=token.get("refresh_token"), scope=granted, patient=token.get("patient"),
        encounter=token.get("encounter"), fhir_context=fhir_context(token.get("fhirContext")),
        need_patient_banner=token.get("need_patient_banner", True) is not False,
        smart_style_url=token.get("smart_style_url"), intent=token.get("intent"), tenant=token.get("tenant"),
        app_context=app_context(token.get("appContext")), id_claims=claims)
    await store.save_login(login)
    return login


async def ensure_fresh(options: SmartOptions, login: Login) -> Login:
    """``login``, its access token refreshed (and stored) when it expires within the margin; raises
    :class:`OAuthProblem` when it cannot be (no refresh token: relaunch)."""
    if login.expires_at - time.time() > _REFRESH_MARGIN_S:
        return login
    if not login.refresh_token:
        raise OAuthProblem("Your access has expired", "Relaunch the app from the EHR.", 401)
    token = await token_request(options.http, login.config, options.credentials,
                                {"grant_type": "refresh_token", "refresh_token": login.refresh_token})
    refreshed = dataclasses.replace(
        login, access_token=str(token["access_token"]), expires_at=time.time() + float(token["expires_in"]),
        refresh_token=token.get("refresh_token") or login.refresh_token, scope=str(token.get("scope") or login.scope),
        refreshed=login.refreshed + 1)
    await options.store.save_login(refreshed)
    return refreshed


def fhir_context(raw: Any) -> list[dict[str, Any]]:
    """fhirContext as objects: SMART 2.1+ sends objects, 2.0 sent strings (references)."""
    items = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, str):
            items.append({"reference": item})
        elif isinstance(item, dict):
            items.append(item)
    return items


def app_context(raw: Any) -> dict[str, Any]:
    """The token response's appContext (a JSON object in a string), or nothing."""
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def card_section(context: dict[str, Any]) -> str | None:
    """The review section a card asked to open on, when it is one of ours."""
    section = context.get("section")
    return section if isinstance(section, str) and section in _SECTIONS else None

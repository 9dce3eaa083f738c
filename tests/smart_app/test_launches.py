"""The launch and its callback as plain functions (issue 22 item 1): called here without the app or a route, with a
real store (SQLite) and the EHR's SMART endpoints as an httpx.MockTransport. Each way a callback ends is a problem
of the error tree carrying its outcome, or a stored login."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from starlette.requests import Request

from ketamine_cds.app import smart_options
from ketamine_cds.settings import Settings
from smart_app import (
    LaunchOutcome,
    LaunchProblem,
    OAuthProblem,
    ReviewProblem,
    SmartOptions,
    SmartProblem,
    complete_launch,
    problem_handler,
    start_launch,
)
from smart_app.launches import ensure_fresh
from smart_app.logins import Login
from storage import Sealer, open_storage
from storage.schema import smart_launch

from .fake_ehr import DISCOVERY, ISS, smart_configuration

pytestmark = pytest.mark.anyio



@dataclass
class Ehr:
    token_status: int = 200
    token: dict[str, Any] = field(default_factory=lambda: {
        "access_token": "synthetic-token", "expires_in": 3600, "scope": "launch patient/*.rs", "patient": "kc-01",
        "fhirContext": ["Encounter/e-1"], "appContext": json.dumps({"section": "bp", "policy": "default"})})
    forms: list[dict[str, list[str]]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == DISCOVERY:
            return httpx.Response(200, json=smart_configuration())
        if request.url.path == "/token":
            self.forms.append(parse_qs(request.content.decode()))
            return httpx.Response(self.token_status, json=self.token if self.token_status == 200 else
                                  {"error": "invalid_grant"})
        return httpx.Response(404)


@dataclass
class Launches:
    options: SmartOptions
    ehr: Ehr

    async def started(self, binding: str | None = None) -> tuple[str, str]:
        """(state, binding) of a new EHR launch."""
        authorization = await start_launch(self.options, iss=ISS, launch="launch-1", binding=binding)
        return authorization.params["state"], authorization.binding


@pytest.fixture
async def launches(tmp_path: Path) -> AsyncIterator[Launches]:
    storage = open_storage(f"sqlite:///{tmp_path / 'state.sqlite3'}", Sealer(Fernet.generate_key()))
    ehr = Ehr()
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr.handle)) as http:
        settings = Settings.model_validate({
            "cds": {"public_base_url": "https://app.test"},
            "smart": {"allowed_issuers": [ISS], "launch_ttl_s": 600, "login_ttl_s": 3600, "max_pending_launches": 100}})
        options = smart_options(settings, storage=storage, http=http, today=dt.date.today)
        yield Launches(options, ehr)
    await storage.aclose()


async def test_a_started_launch_asks_for_pkce_s256_and_keeps_its_verifier_server_side(launches: Launches) -> None:
    authorization = await start_launch(launches.options, iss=ISS + "/", launch="launch-1", binding=None)
    params = authorization.params
    assert authorization.by_post is False and authorization.url.startswith("https://ehr.test/auth?")
    assert params["launch"] == "launch-1" and params["aud"] == ISS + "/" and params["code_challenge_method"] == "S256"
    assert "launch" in params["scope"].split() and "patient/Observation.rs" in params["scope"].split()
    assert len(authorization.binding) == 43
    record = await launches.options.store.peek_launch(params["state"])
    assert record is not None and record.launch == "launch-1" and record.nonce == params["nonce"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(record.verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == params["code_challenge"] and record.verifier not in authorization.url


async def test_a_callback_exchanges_the_code_once_and_stores_the_login(launches: Launches) -> None:
    state, binding = await launches.started()
    login = await complete_launch(launches.options, {"code": "code-1", "state": state}, binding)
    assert (login.patient, login.fhir_context, login.app_context["section"]) == (
        "kc-01", [{"reference": "Encounter/e-1"}], "bp")
    assert launches.ehr.forms[0]["code_verifier"] and launches.ehr.forms[0]["code"] == ["code-1"]
    stored = await launches.options.store.login(login.id, binding)
    assert stored is not None and stored.access_token == "synthetic-token" and stored.expires_at > time.time() + 3000
    with pytest.raises(LaunchProblem, match="already used") as again:
        await complete_launch(launches.options, {"code": "code-1", "state": state}, binding)
    assert again.value.outcome is LaunchOutcome.REFUSED and len(launches.ehr.forms) == 1


async def _expire(launches: Launches, state: str) -> None:
    with launches.options.store.storage.engine.begin() as conn:
        conn.execute(sa.update(smart_launch).where(smart_launch.c.state == state)
                     .values(created=smart_launch.c.created - 601))


@pytest.mark.parametrize(("case", "kind", "status", "outcome"), [
    ("access denied", LaunchProblem, 403, LaunchOutcome.DENIED),
    ("another OAuth error", LaunchProblem, 400, LaunchOutcome.REFUSED),
    ("no state", LaunchProblem, 400, LaunchOutcome.REFUSED),
    ("another browser", LaunchProblem, 400, LaunchOutcome.REFUSED),
    ("expired", LaunchProblem, 400, LaunchOutcome.EXPIRED),
    ("no code", LaunchProblem, 400, LaunchOutcome.REFUSED),
    ("token refused", OAuthProblem, 502, LaunchOutcome.FAILED),
])
async def test_each_way_a_callback_fails_is_a_problem_with_its_outcome(
        launches: Launches, case: str, kind: type[SmartProblem], status: int, outcome: LaunchOutcome) -> None:
    state, binding = await launches.started()
    query = {"code": "code-1", "state": state}
    if case == "access denied":
        query = {"error": "access_denied", "state": state}
    elif case == "another OAuth error":
        query = {"error": "invalid_scope", "error_description": "call 555-0100", "state": state}
    elif case == "no state":
        query = {"code": "code-1"}
    elif case == "another browser":
        binding = "x" * 43
    elif case == "expired":
        await _expire(launches, state)
    elif case == "no code":
        query = {"state": state}
    elif case == "token refused":
        launches.ehr.token_status = 400
    with pytest.raises(kind) as raised:
        await complete_launch(launches.options, query, binding)
    assert (raised.value.status, raised.value.outcome) == (status, outcome)
    assert "555-0100" not in raised.value.message  # only our own words
    if case == "another browser":  # not spent: the browser that started it still can
        assert await launches.options.store.peek_launch(state) is not None


async def test_a_launch_refused_before_anything_is_stored(launches: Launches) -> None:
    with pytest.raises(LaunchProblem) as refused:
        await start_launch(launches.options, iss="https://evil.test/" + "x" * 5000, launch="l", binding=None)
    assert (refused.value.title, refused.value.status) == ("This EHR is not allowed", 403)
    assert len(refused.value.message) < 400  # the iss repeated in part only: anyone writes it
    with pytest.raises(LaunchProblem) as unnamed:
        await start_launch(launches.options, iss=None, launch=None, binding=None)
    assert unnamed.value.title == "No EHR given"
    with launches.options.store.storage.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(smart_launch)).scalar_one() == 0


async def test_an_access_token_about_to_expire_without_a_refresh_token_asks_for_a_relaunch(
        launches: Launches) -> None:
    state, binding = await launches.started()
    launches.ehr.token["expires_in"] = 30
    login: Login = await complete_launch(launches.options, {"code": "code-1", "state": state}, binding)
    with pytest.raises(OAuthProblem) as expired:
        await ensure_fresh(launches.options, login)
    assert (expired.value.title, expired.value.status) == ("Your access has expired", 401)


async def test_an_access_token_about_to_expire_is_refreshed_and_the_login_stored_anew(launches: Launches) -> None:
    state, binding = await launches.started()
    launches.ehr.token |= {"expires_in": 30, "refresh_token": "synthetic-refresh"}
    login = await complete_launch(launches.options, {"code": "code-1", "state": state}, binding)
    launches.ehr.token = {"access_token": "synthetic-token-2", "expires_in": 3600}
    fresh = await ensure_fresh(launches.options, login)
    assert (fresh.access_token, fresh.refreshed, fresh.refresh_token) == ("synthetic-token-2", 1, "synthetic-refresh")
    assert launches.ehr.forms[-1]["grant_type"] == ["refresh_token"]
    assert login.access_token == "synthetic-token"  # a new login, the old one left as it was
    stored = await launches.options.store.login(login.id, binding)
    assert stored == fresh and await ensure_fresh(launches.options, fresh) is fresh  # fresh enough: no call
    assert len(launches.ehr.forms) == 2


async def test_the_one_handler_renders_every_problem_of_the_tree_as_its_page(launches: Launches) -> None:
    handle = problem_handler(launches.options)
    request = Request({"type": "http", "method": "GET", "path": "/smart/launch", "headers": []})
    for problem in (LaunchProblem("Too many sign-ins are in progress", "Wait.", 503, retry_after_s=60),
                    OAuthProblem("The EHR refused", "Relaunch.", 502),
                    ReviewProblem("Patient not found", "Relaunch.", 404)):
        page = await handle(request, problem)
        body = bytes(page.body).decode()
        assert page.status_code == problem.status and problem.title in body and "Traceback" not in body
        assert page.headers.get("retry-after") == (None if problem.retry_after_s is None else "60")
        assert "frame-ancestors" in page.headers["content-security-policy"]

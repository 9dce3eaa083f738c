"""The sandbox EHR: its FHIR server needs the sandbox's token with covering scopes, and its chart acts as a CDS
client that signs its JWT, calls the service and sends feedback."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ehr_sandbox import LaunchContext, scope_allows

from ..stack import Stack, running_stack, text_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("sandbox")) as s:
        yield s


def token_for(stack: Stack, scope: str, patient: str | None = "kc-01") -> str:
    launch = stack.sandbox.auth.new_launch(LaunchContext(patient=patient))
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = stack.base + "/smart/callback"
    r = httpx.get(stack.base + "/sandbox/auth/authorize", params={
        "response_type": "code", "client_id": "ketamine-cds", "redirect_uri": redirect, "scope": scope,
        "state": "s" * 30, "aud": stack.fhir, "code_challenge": challenge, "code_challenge_method": "S256",
        "launch": launch})
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    token = httpx.post(stack.base + "/sandbox/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier,
        "client_id": "ketamine-cds"}).json()
    assert token["patient"] == patient and token["need_patient_banner"] is True
    assert "refresh_token" not in token  # not asked for
    return str(token["access_token"])


def test_smart_configuration(stack: Stack) -> None:
    config = httpx.get(stack.fhir + "/.well-known/smart-configuration").json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-ehr", "launch-standalone", "permission-v2", "client-confidential-asymmetric",
            "sso-openid-connect"} <= set(config["capabilities"])
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]


def test_the_fhir_server_needs_a_token_with_covering_scopes_for_the_launched_patient(stack: Stack) -> None:
    assert httpx.get(stack.fhir + "/metadata").status_code == 200  # the capability statement is public
    assert httpx.get(stack.fhir + "/Condition", params={"patient": "kc-01"}).status_code == 401
    token = token_for(stack, "launch patient/Condition.rs")
    auth = {"Authorization": f"Bearer {token}"}
    ok = httpx.get(stack.fhir + "/Condition", params={"patient": "kc-01"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["entry"]
    assert httpx.get(stack.fhir + "/Observation", params={"patient": "kc-01"}, headers=auth).status_code == 403
    assert httpx.get(stack.fhir + "/Condition", params={"patient": "kc-10"}, headers=auth).status_code == 403
    assert httpx.get(stack.fhir + "/Condition", headers=auth).status_code == 403  # no patient: not in compartment
    assert httpx.delete(stack.fhir + "/Condition/kc-01-cond1", headers=auth).status_code == 403
    assert httpx.get(stack.fhir + "/Condition", params={"patient": "kc-01"},
                     headers={"Authorization": "Bearer forged"}).status_code == 401


def test_scope_grammar() -> None:
    assert scope_allows("patient/*.read", "Observation") and scope_allows("user/Condition.rs", "Condition")
    assert not scope_allows("patient/Condition.c", "Condition") and not scope_allows("launch openid", "Patient")


def test_chart_cds_client_renders_cards_and_sends_feedback(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-18", "hook": "order-select"})
        text = text_of(page)
        assert "HTTP 200" in text
        assert "Esketamine: ketamine/esketamine hypersensitivity on record — label contraindication" in text
        fields = dict(re.findall(r'name="(card|service)" value="([^"]+)"', page.text))
        done = browser.post("/sandbox/feedback", data={
            "patient": "kc-18", "service": fields["service"], "card": fields["card"], "outcome": "overridden",
            "reason_system": "https://ketamine-cds.org/CodeSystem/override-reason",
            "reason_code": "chart-data-incorrect", "reason_display": "Chart data is incorrect or out of date"})
        assert "Feedback (overridden) sent: HTTP 200" in text_of(done)
    with sqlite3.connect(stack.settings.cds.feedback_db) as db:
        row = db.execute("SELECT override_code, issuer FROM feedback WHERE card_uuid = ?", (fields["card"],)).fetchone()
    assert row == ("chart-data-incorrect", stack.base + "/sandbox")


def test_patients_without_an_indication_get_their_card(stack: Stack) -> None:
    with stack.browser() as browser:
        text = text_of(browser.post("/sandbox/cds", data={"patient": "kc-05", "hook": "order-sign"}))
        assert "Esketamine not indicated: anxiety alone is not an indication" in text


def test_reads_by_id_and_history_stay_in_the_launched_patients_compartment(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {token_for(stack, 'launch patient/*.rs')}"}
    mine = httpx.get(stack.fhir + "/Condition", params={"patient": "kc-01"}, headers=auth).json()["entry"][0]
    own_id = mine["resource"]["id"]
    assert httpx.get(f"{stack.fhir}/Condition/{own_id}", headers=auth).status_code == 200
    assert httpx.get(f"{stack.fhir}/Patient/kc-01", headers=auth).status_code == 200
    # Another patient's records, by id or through history, are refused.
    assert httpx.get(f"{stack.fhir}/Condition/kc-10-cond1", headers=auth).status_code == 403
    assert httpx.get(f"{stack.fhir}/Condition/kc-10-cond1/_history", headers=auth).status_code == 403
    assert httpx.get(f"{stack.fhir}/Patient/kc-10", headers=auth).status_code == 403
    assert httpx.get(f"{stack.fhir}/Condition/_history", headers=auth).status_code == 403
    assert httpx.get(f"{stack.fhir}/Patient", params={"_id": "kc-10"}, headers=auth).status_code == 403


def test_only_the_fhir_api_is_reachable_under_the_sandbox(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {token_for(stack, 'launch patient/*.rs')}"}
    assert httpx.get(stack.base + "/sandbox/").status_code == 200  # the chart itself
    # The embedded server's own UI, simulator, loaders and hooks (all of them exist in SEKMET):
    for path in ("/sandbox/ui", "/sandbox/ui/resources", "/sandbox/api/docs", "/sandbox/api/openapi.json",
                 "/sandbox/redoc"):
        assert httpx.get(stack.base + path).status_code == 404, path
        assert httpx.get(stack.base + path, headers=auth).status_code == 404, path
    for path in ("/sandbox/ui/simulator/toggle", "/sandbox/ui/load/run", "/sandbox/hooks/peer/key"):
        assert httpx.post(stack.base + path, headers=auth, json={}).status_code == 404, path


def test_a_launch_id_is_single_use_and_an_unknown_launch_without_redirect_is_400(stack: Stack) -> None:
    launch = stack.sandbox.auth.new_launch(LaunchContext(patient="kc-01"))
    assert stack.sandbox.auth._take_launch(launch) is not None
    assert stack.sandbox.auth._take_launch(launch) is None  # spent
    r = httpx.get(stack.base + "/sandbox/auth/authorize", params={
        "response_type": "code", "client_id": "ketamine-cds", "scope": "launch patient/*.rs", "state": "s" * 30,
        "aud": stack.fhir, "code_challenge": "x" * 43, "code_challenge_method": "S256", "launch": "no-such-launch"})
    assert r.status_code == 400


def test_card_markdown_is_rendered_and_raw_html_is_not(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-10", "hook": "order-sign"})
    cards = page.text.split('id="cds-json"')[0]  # the JSON panel below shows the raw Markdown, as sent
    assert "<strong>Esketamine is contraindicated</strong>" in cards and "**Esketamine" not in cards


def test_an_accepted_suggestion_is_applied_to_the_order_pad(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-09", "hook": "order-sign"})
        card, suggestion = re.search(r'name="card" value="([^"]+)">\s*<input type="hidden" name="outcome" '
                                     r'value="accepted"><input type="hidden" name="suggestion" value="([^"]+)"',
                                     page.text).groups()  # type: ignore[union-attr]
        service = re.search(r'name="service" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = browser.post("/sandbox/feedback", data={"patient": "kc-09", "service": service, "card": card,
                                                       "outcome": "accepted", "suggestion": suggestion})
    assert "Feedback (accepted) sent: HTTP 200" in text_of(done)
    assert re.search(r"<del>Spravato \(esketamine\) 56 mg</del>", done.text)  # the draft order, struck out


def test_work_up_suggestions_draft_service_requests_on_the_order_pad(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-20", "hook": "order-sign"})
        match = re.search(r'name="card" value="([^"]+)">\s*<input type="hidden" name="outcome" value="accepted">'
                          r'<input type="hidden" name="suggestion" value="([^"]+)">\s*<button[^>]*>Accept: '
                          r'Order a PHQ-9', page.text)
        assert match is not None
        service = re.search(r'name="service" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = browser.post("/sandbox/feedback", data={"patient": "kc-20", "service": service,
                                                       "card": match.group(1), "outcome": "accepted",
                                                       "suggestion": match.group(2)})
    assert "PHQ-9 quick depression assessment panel" in text_of(done) and "drafted from a card" in done.text


def test_an_override_reason_is_picked_from_the_cards_list_with_a_comment(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-10", "hook": "order-sign"})
        options = re.findall(r'<option value="([^"]+)">', page.text)
        assert "diagnosis-not-current" in options and len(options) >= 3
        fields = dict(re.findall(r'name="(card|service)" value="([^"]+)"', page.text))
        browser.post("/sandbox/feedback", data={"patient": "kc-10", **fields, "outcome": "overridden",
                                                "reason_code": "diagnosis-not-current",
                                                "comment": "bipolar ruled out by psychiatry 2024"})
    with sqlite3.connect(stack.settings.cds.feedback_db) as db:
        row = db.execute("SELECT override_code, override_display, user_comment FROM feedback WHERE card_uuid = ?",
                         (fields["card"],)).fetchone()
    assert row == ("diagnosis-not-current", "Diagnosis is historical, resolved or was ruled out",
                   "bipolar ruled out by psychiatry 2024")


def test_the_json_panel_shows_the_exchange_without_tokens(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-01", "hook": "order-sign",
                                                  "scenario": "restricted-scopes"})
    panel = page.text[page.text.index('id="cds-json"'):]
    assert "&#34;hookInstance&#34;" in panel or '"hookInstance"' in panel
    assert "(redacted)" in panel and "eyJ" not in panel


@pytest.mark.parametrize(("scenario", "expected"), [
    ("fhir-down", "treated as unknown, not absent"),
    ("restricted-scopes", "treated as unknown, not absent"),
    ("compounded", "ketamine: FDA warns of risks outside monitored settings"),
])
def test_the_demo_situations_show_unknown_not_absent_and_the_fda_warning(
        stack: Stack, scenario: str, expected: str) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-01", "hook": "order-sign", "scenario": scenario})
    text = text_of(page)
    assert "HTTP 200" in text and expected in text
    if scenario != "compounded":  # a candidate's chart, with medications or observations unreadable
        assert "criteria met" not in text


@pytest.mark.parametrize(("action", "expected"), [
    ("book", ["Session slot 60 min: needs 135 min (dose + 2 h monitoring)",
              "No driving until the next day after restful sleep: arrange transport"]),
    ("discharge-early", ["Esketamine given", "BP 152/96 at", "Outpatient session: REMS monitoring form"]),
    ("discharge-later", ["Outpatient session: REMS monitoring form within 7 days"]),
])
def test_the_sandbox_books_and_discharges_sessions(stack: Stack, action: str, expected: list[str]) -> None:
    with stack.browser() as browser:
        page = browser.post("/sandbox/session", data={"patient": "kc-01", "action": action})
    text = text_of(page)
    assert "HTTP 200" in text
    for needle in expected:
        assert needle in text, needle
    if action == "discharge-later":
        assert "discharge not before" not in text and "not yet decreasing" not in text


# -- a fixture's own search outcome (issue #20, fixture 53): every face gives the file's answer ----------------------

def _fhir(stack: Stack, token: str, path: str, **params: str) -> dict[str, object]:
    r = httpx.get(f"{stack.fhir}/{path}", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def _outcomes(bundle: dict[str, object]) -> list[dict[str, object]]:
    entries = bundle.get("entry") or []
    assert isinstance(entries, list)
    return [e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "outcome"]


def test_a_fixtures_own_search_outcome_comes_back_with_that_patients_searches_of_the_types_it_held(
        stack: Stack) -> None:
    token = token_for(stack, "launch patient/*.rs", patient="kc-53")
    for rtype in ("Condition", "MedicationStatement", "Observation"):  # what fixture 53's searchset holds
        outcome, = _outcomes(_fhir(stack, token, rtype, patient="kc-53"))
        assert outcome["issue"][0]["severity"] == "warning"  # type: ignore[index]
        assert "suppressed" in outcome["issue"][0]["details"]["text"]  # type: ignore[index]
    assert _outcomes(_fhir(stack, token, "MedicationRequest", patient="kc-53")) == []  # a type it did not hold
    assert _outcomes(_fhir(stack, token_for(stack, "launch patient/*.rs"), "Condition", patient="kc-01")) == []
    # The outcome is the search's, not a record of the chart: it was never loaded as one.
    r = httpx.get(f"{stack.fhir}/OperationOutcome/kc-53-outcome", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404


def test_the_chart_whose_search_withheld_results_gets_evaluates_answer_on_the_card_and_in_the_app(
        stack: Stack) -> None:
    import asyncio
    import html
    import json

    from eligibility import assess_pool, assessment_to_json, load_policy
    from fhir_mapping import ClientSettings, FhirClient, read_path
    from smart_app.oauth import RESOURCE_TYPES
    from smart_app.review import load_review

    from ..conftest import fixture_bundles
    from ..ketamine_cds.test_faces_agree import _from_card, _summary
    from ..stack import TODAY, launch_from_chart

    path = next(p for p in fixture_bundles() if p.stem.startswith("53-"))
    from_file = _summary(assessment_to_json(assess_pool(read_path(path), load_policy("default"), TODAY)[0]))
    assert from_file["verdict"] == "needs_workup" and from_file["contraindications"]["bipolar"] == "unknown"

    with stack.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": "kc-53", "hook": "order-sign"})
        pre = re.search(r"<h3>Response \(HTTP 200\)</h3><pre class=\"json\">(.*?)</pre>", page.text, re.S)
        assert pre is not None, "the chart shows no answer of the CDS service"
        assert _from_card(json.loads(html.unescape(pre.group(1)))["cards"]) == from_file
        app = launch_from_chart(stack, browser, "kc-53")
    assert "Needs work-up" in text_of(app)

    token = token_for(stack, "launch patient/*.rs", patient="kc-53")
    client = FhirClient(stack.fhir, token=token, settings=ClientSettings(budget_s=20))
    review = asyncio.run(load_review(client, "kc-53", set(RESOURCE_TYPES), load_policy("default"), TODAY))
    assert _summary(assessment_to_json(review.assessment)) == from_file

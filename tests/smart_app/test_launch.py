"""End-to-end launches through the sandbox EHR (a real authorization server and a real FHIR server on loopback),
with a browser-like httpx client that follows redirects."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from ehr_sandbox import SandboxClient
from ketamine_cds.settings import Settings
from smart_app.logins import Login
from smart_app.routes import BROWSER_COOKIE

from ..stack import Stack, launch_from_chart, running_stack, submit_authorize_form, text_of


def age_launch(stack: Stack, state: str, seconds: float) -> None:
    """Make a stored launch ``seconds`` older (the clock of the shared store is the wall clock)."""
    import sqlalchemy as sa

    from storage.schema import smart_launch

    with stack.app.state.storage.engine.begin() as conn:
        conn.execute(sa.update(smart_launch).where(smart_launch.c.state == state)
                     .values(created=smart_launch.c.created - seconds))


def age_launches(stack: Stack, seconds: float) -> None:
    """Make every stored launch ``seconds`` older."""
    import sqlalchemy as sa

    from storage.schema import smart_launch

    with stack.app.state.storage.engine.begin() as conn:
        conn.execute(sa.update(smart_launch).values(created=smart_launch.c.created - seconds))


def stored_login(stack: Stack, login_id: str, browser: httpx.Client) -> Login:
    """The login as the shared store holds it (read through the app's own store, as that browser)."""
    import asyncio

    found = asyncio.run(stack.app.state.smart.store.login(login_id, browser.cookies.get(BROWSER_COOKIE)))
    assert found is not None
    return found

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


def test_ehr_launch_shows_the_assessment_behind_the_verdict(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-10")
        assert page.status_code == 200 and "/smart/app/" in str(page.url)
        text = text_of(page)
        assert "Yasmin Ahmed" in text and "Contraindicated" in text
        assert "Bipolar disorder (exclusion of this clinic policy)" in text and "Condition/kc-10-cond2" in text
        assert "/fhir/Condition/" not in page.text  # evidence opens in place, never as a raw FHIR URL
        assert "sertraline" in text and "150 mg (50 mg)" in text and "21 → 19" in text
        assert "BP 128/82 mmHg" in text
        assert page.text.count("<svg") == 2  # the timeline and the BP chart, server-rendered
        assert "Observation?patient=kc-10" in text  # provenance: the queries that ran
        # A source's basis in words beside each rule, never "not fully verified" beside a label fact (issue 18).
        assert "not fully verified" not in text and "this clinic's rule, informed by the cited source" in text


def test_a_patient_in_a_course_sees_the_course_its_doses_and_its_response(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-41")
        text = text_of(page)
        assert "Continue the course" in text
        assert "Esketamine course, week 5 (9 doses): PHQ-9 19 \u2192 8 (\u221258 %, response)" in text
        assert "First dose" in text and "2026-09-30" in text and "maintenance, week 5" in text
        assert "PHQ-9 before the first dose" in text and "Response response" in " ".join(text.split())
        assert page.text.count('class="dose"') == 9  # each dose on the timeline
        assert "ketamine/esketamine doses" in page.text  # its legend, in the SVG


@pytest.mark.parametrize(("patient", "shown"), [
    ("kc-57", "CNS depressants increase the sedation of esketamine; monitor for sedation"),  # issue 20, decision 7
    ("kc-51", "computed from the nine items"),                                              # decision 2
    ("kc-56", "Confirm adherence to escitalopram"),                                         # decision 6
])
def test_the_review_shows_what_charts_as_ehrs_publish_them_say(stack: Stack, patient: str, shown: str) -> None:
    with stack.browser() as browser:
        assert shown in text_of(launch_from_chart(stack, browser, patient))


def test_an_ended_course_is_history_beside_a_first_start(stack: Stack) -> None:
    with stack.browser() as browser:
        text = text_of(launch_from_chart(stack, browser, "kc-45"))
        assert "Earlier ketamine/esketamine course" in text and "this order is judged as a new start" in text
        assert "Candidate" in text


def test_standalone_launch_uses_launch_patient_and_the_default_iss(stack: Stack) -> None:
    with stack.browser() as browser:
        first = browser.get("/smart/launch", follow_redirects=False)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', first.text))
        assert "launch/patient" in fields["scope"] and "launch" not in fields
        assert fields["aud"] == stack.fhir and fields["code_challenge_method"] == "S256"
        assert len(fields["state"]) >= 43  # 256 bits, url-safe base64
        page = submit_authorize_form(browser, first)
        assert "Alma Rivera" in text_of(page) and "Candidate" in text_of(page)


def test_v2_scopes_when_the_server_advertises_permission_v2(stack: Stack) -> None:
    with stack.browser() as browser:
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', browser.get("/smart/launch").text))
        scopes = fields["scope"].split()
        assert "patient/Observation.rs" in scopes and "openid" in scopes and "fhirUser" in scopes
        assert "offline_access" not in scopes  # only when configured


def test_several_launches_in_one_browser_do_not_disturb_each_other(stack: Stack) -> None:
    with stack.browser() as browser:
        first = launch_from_chart(stack, browser, "kc-10")
        second = launch_from_chart(stack, browser, "kc-01")
        assert "Yasmin Ahmed" in text_of(browser.get(str(first.url)))
        assert "Alma Rivera" in text_of(browser.get(str(second.url)))


def test_the_login_is_bound_to_the_browser(stack: Stack) -> None:
    with stack.browser() as browser:
        url = str(launch_from_chart(stack, browser, "kc-10").url)
    with stack.browser() as other:
        page = other.get(url)
        assert page.status_code == 401 and "Your sign-in has ended" in page.text


def test_cookie_flags_and_security_headers(stack: Stack) -> None:
    with stack.browser() as browser:
        launch = browser.get("/smart/launch", follow_redirects=False)
        cookie = launch.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/smart" in cookie
        assert "access_token" not in cookie
        page = submit_authorize_form(browser, launch)
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in policy and "default-src 'none'" in policy
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        redirect = browser.get("/smart/launch", follow_redirects=False)
        assert "frame-ancestors" in redirect.headers["content-security-policy"]


def test_card_link_opens_on_the_cards_assessment(stack: Stack) -> None:
    with stack.browser() as browser:
        cards = browser.post("/sandbox/cds", data={"patient": "kc-10", "hook": "order-sign"})
        assert "Esketamine: bipolar disorder on record" in text_of(cards)
        app_context = re.search(r'name="app_context" value="([^"]+)"', cards.text)
        assert app_context is not None
        import html

        page = launch_from_chart(stack, browser, "kc-10", app_context=html.unescape(app_context.group(1)))
        text = text_of(page)
        assert "Opened from the card “Esketamine: bipolar disorder on record" in text and "Contraindicated" in text
        assert str(page.url).endswith("#checklist")  # the card's section (the redirect carries the fragment)


def test_need_patient_banner_false_hides_the_banner(stack: Stack) -> None:
    with stack.browser() as browser:
        with_banner = launch_from_chart(stack, browser, "kc-01")
        without = launch_from_chart(stack, browser, "kc-01", banner="false")
        assert 'aria-label="Patient"' in with_banner.text and 'aria-label="Patient"' not in without.text


def test_smart_style_url_colours_are_applied(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-01")
        assert "--accent: #0b5cad" in page.text and "--bg: #f4f6f8" in page.text


def test_policy_selector_changes_the_assessment(stack: Stack) -> None:
    with stack.browser() as browser:
        url = str(launch_from_chart(stack, browser, "kc-09").url)
        assert "Contraindicated" in text_of(browser.get(url))
        label = text_of(browser.get(url, params={"policy": "esketamine-us-label"}))
        assert "Candidate" in label and "Caution: psychotic disorder" in label


def test_sign_out_needs_the_csrf_token(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-01")
        login_id = str(page.url).rsplit("/", 1)[-1]
        assert browser.post(f"/smart/app/{login_id}/logout", data={"csrf": "forged"}).status_code == 403
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert browser.post(f"/smart/app/{login_id}/logout", data={"csrf": csrf}).status_code == 200
        assert browser.get(str(page.url)).status_code == 401


# -- errors the user can act on -------------------------------------------------------------------------------------

def test_access_denied_is_a_clear_page(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-01", error="access_denied")
        assert page.status_code == 403 and "Access was not granted" in page.text
        assert "Traceback" not in page.text


def test_other_oauth_errors_are_a_clear_page(stack: Stack) -> None:
    with stack.browser() as browser:
        page = launch_from_chart(stack, browser, "kc-01", error="invalid_scope")
        assert page.status_code == 400 and "invalid_scope" in page.text


def test_a_tampered_state_is_refused_and_does_not_consume_the_real_launch(stack: Stack) -> None:
    with stack.browser() as browser:
        launch = browser.get("/smart/launch", follow_redirects=False)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', launch.text))
        authorize = browser.post(stack.base + "/sandbox/auth/authorize", data=fields, follow_redirects=False)
        callback = authorize.headers["location"]
        tampered = callback.replace(fields["state"], fields["state"][:-2] + "xx")
        refused = browser.get(tampered)
        assert refused.status_code == 400 and "not valid" in refused.text
        assert browser.get(callback).status_code == 200


def test_a_leaked_callback_used_in_another_browser_does_not_spend_the_real_launch(stack: Stack) -> None:
    with stack.browser() as browser:
        launch = browser.get("/smart/launch", follow_redirects=False)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', launch.text))
        callback = browser.post(stack.base + "/sandbox/auth/authorize", data=fields,
                                follow_redirects=False).headers["location"]
        with stack.browser() as stranger:  # no binding cookie
            refused = stranger.get(callback)
            assert refused.status_code == 400 and "belongs to another browser" in refused.text
        page = browser.get(callback)  # the real user still completes the launch
        assert page.status_code == 200 and "/smart/app/" in str(page.url)


def test_the_redirects_error_description_is_never_shown(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.get("/smart/callback", params={
            "error": "server_error", "error_description": "<b>Call 555-0100 and give your password</b>"})
        assert page.status_code == 400 and "server_error" in page.text
        assert "555-0100" not in page.text and "password" not in page.text
        odd = browser.get("/smart/callback", params={"error": "<script>made-up</script>"})
        assert odd.status_code == 400 and "made-up" not in odd.text


def test_a_callback_is_usable_once(stack: Stack) -> None:
    with stack.browser() as browser:
        launch = browser.get("/smart/launch", follow_redirects=False)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', launch.text))
        authorize = browser.post(stack.base + "/sandbox/auth/authorize", data=fields, follow_redirects=False)
        callback = authorize.headers["location"]
        assert browser.get(callback).status_code == 200
        replay = browser.get(callback)
        assert replay.status_code == 400 and "already used" in replay.text


def test_an_expired_launch_is_refused(stack: Stack) -> None:
    store = stack.app.state.smart.store
    with stack.browser() as browser:
        launch = browser.get("/smart/launch", follow_redirects=False)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', launch.text))
        age_launch(stack, fields["state"], store.launch_ttl_s + 1)
        page = submit_authorize_form(browser, launch)
        assert page.status_code == 400 and "expired" in page.text


def test_an_issuer_not_on_the_list_is_refused(stack: Stack) -> None:
    with stack.browser() as browser:
        page = browser.get("/smart/launch", params={"iss": "https://evil.example/fhir", "launch": "x"})
        assert page.status_code == 403 and "not allowed" in page.text


def test_a_fhir_server_that_is_down_is_a_clear_page(tmp_path: Path) -> None:
    def configure(settings: Settings) -> None:
        settings.smart.allowed_issuers.append("http://127.0.0.1:9/fhir")

    with running_stack(tmp_path, configure=configure) as s, s.browser() as browser:
        page = browser.get("/smart/launch", params={"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
        assert page.status_code == 502 and "cannot be reached" in page.text


def test_a_flood_of_anonymous_launches_is_capped_and_a_clear_page_says_so(tmp_path: Path) -> None:
    def configure(settings: Settings) -> None:
        settings.smart.max_pending_launches = 4

    with running_stack(tmp_path, configure=configure) as s:
        with s.browser() as flood:
            for _ in range(4):
                flood.cookies.clear()  # each GET a new anonymous caller
                assert flood.get("/smart/launch", follow_redirects=False).status_code == 200
            with s.browser() as clinician:
                refused = launch_from_chart(s, clinician, "kc-10")
                assert refused.status_code == 503 and "Too many sign-ins are in progress" in refused.text
                assert refused.headers["retry-after"] == "60"
        with s.browser() as clinician:
            age_launches(s, s.app.state.smart.store.launch_ttl_s + 1)  # the flood's launches expire...
            page = launch_from_chart(s, clinician, "kc-10")  # ...and launches are started again
            assert page.status_code == 200 and "Contraindicated" in text_of(page)


def test_pkce_is_required_and_plain_is_refused(stack: Stack) -> None:
    with stack.browser() as browser:
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"',
                                 browser.get("/smart/launch", follow_redirects=False).text))
        authorize = stack.base + "/sandbox/auth/authorize"
        plain = {**fields, "code_challenge": "x" * 50, "code_challenge_method": "plain"}
        r = browser.post(authorize, data=plain, follow_redirects=False)
        assert "error=invalid_request" in r.headers["location"]
        missing = {k: v for k, v in fields.items() if not k.startswith("code_challenge")}
        r = browser.post(authorize, data=missing, follow_redirects=False)
        assert "error=invalid_request" in r.headers["location"]


def test_a_wrong_code_verifier_is_refused_by_the_ehr(stack: Stack) -> None:
    with stack.browser() as browser:
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"',
                                 browser.get("/smart/launch", follow_redirects=False).text))
        r = browser.post(stack.base + "/sandbox/auth/authorize", data=fields, follow_redirects=False)
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        token = httpx.post(stack.base + "/sandbox/auth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": fields["redirect_uri"],
            "code_verifier": "tampered-verifier-" + "x" * 40, "client_id": "ketamine-cds"})
        assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


# -- client types, scopes, refresh --------------------------------------------------------------------------------

def _key_file(tmp: Path, alg: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    key = RSAKey.generate_key(2048) if alg == "RS384" else ECKey.generate_key("P-384")
    path = tmp / f"key-{alg}.pem"
    path.write_bytes(key.as_pem(private=True))
    public = key.as_dict(private=False)
    public["kid"] = key.thumbprint()
    return path, {"keys": [public]}


@pytest.mark.parametrize("kind", ["symmetric", "RS384", "ES384"])
def test_confidential_clients(tmp_path: Path, kind: str) -> None:
    jwks = None
    key_path = None
    if kind != "symmetric":
        key_path, jwks = _key_file(tmp_path, kind)

    def configure(settings: Settings) -> None:
        settings.smart.client_id = "confidential"
        if kind == "symmetric":
            settings.smart.client_secret = "s3cret-" + "x" * 24
        else:
            settings.smart.private_key_file, settings.smart.alg = key_path, kind  # type: ignore[assignment]

    method = "client_secret_basic" if kind == "symmetric" else "private_key_jwt"
    port_placeholder = SandboxClient("confidential", [], method, client_secret="s3cret-" + "x" * 24, jwks=jwks)
    with running_stack(tmp_path, client=port_placeholder, configure=configure) as s:
        port_placeholder.redirect_uris.append(s.base + "/smart/callback")
        with s.browser() as browser:
            page = launch_from_chart(s, browser, "kc-01")
            assert page.status_code == 200 and "Alma Rivera" in text_of(page), page.text[-400:]
            if kind != "symmetric":
                published = browser.get("/smart/.well-known/jwks.json").json()["keys"][0]
                assert published["alg"] == kind and "d" not in published  # public half only
        if kind == "symmetric":
            s.sandbox.auth.store.clients["confidential"].client_secret = "changed"
            with s.browser() as browser:
                page = launch_from_chart(s, browser, "kc-01")
                assert page.status_code == 502 and "refused to issue an access token" in page.text


def test_v1_scopes_when_the_server_lacks_permission_v2(tmp_path: Path) -> None:
    with running_stack(tmp_path, permission_v2=False, authorize_post=False) as s, s.browser() as browser:
        first = browser.get("/smart/launch", params={"iss": s.fhir}, follow_redirects=False)
        assert first.status_code == 302  # a plain GET redirect without authorize-post
        scope = parse_qs(urlsplit(first.headers["location"]).query)["scope"][0]
        assert "patient/Observation.read" in scope.split() and ".rs" not in scope
        page = browser.get(first.headers["location"])
        assert page.status_code == 200 and "Alma Rivera" in text_of(page)


def test_the_refresh_token_is_used_when_the_access_token_expires(tmp_path: Path) -> None:
    def configure(settings: Settings) -> None:
        settings.smart.offline_access = True

    # Tokens live 30 s: within the app's 60 s margin, so the next page view must refresh first.
    with running_stack(tmp_path, configure=configure, access_token_ttl_s=30) as s, s.browser() as browser:
        page = launch_from_chart(s, browser, "kc-01")
        login_id = str(page.url).rsplit("/", 1)[-1]
        login = stored_login(s, login_id, browser)
        first_token = login.access_token
        assert login.refresh_token and login.refreshed == 1  # the first view already refreshed
        again = browser.get(str(page.url))
        login = stored_login(s, login_id, browser)
        assert again.status_code == 200 and login.refreshed == 2 and login.access_token != first_token
        assert s.sandbox.auth.bearer(f"Bearer {login.access_token}") is not None


def test_a_grant_narrower_than_the_request_shows_not_authorized(tmp_path: Path) -> None:
    client = SandboxClient("ketamine-cds", [], "none",
                           grantable_types=frozenset({"Patient", "Condition", "MedicationStatement",
                                                      "MedicationRequest", "Medication", "AllergyIntolerance"}))
    with running_stack(tmp_path, client=client) as s, s.browser() as browser:
        client.redirect_uris.append(s.base + "/smart/callback")
        page = launch_from_chart(s, browser, "kc-01")
        text, page_html = text_of(page), page.text
        assert "Not authorized: the EHR did not grant access to Observations" in text
        assert "Needs work-up" in text
        assert "Observations could not be obtained: this app or service was not granted access to them" in text
        assert '<span class="status unknown">unknown</span>' in page_html  # blood pressure: unknown, never absent


def test_ehr_launch_time_is_recorded(stack: Stack) -> None:
    # The launch record carries its creation time; logins never outlive their TTL.
    assert stack.app.state.smart.store.login_ttl_s <= 12 * 3600 and time.time() > 0
    assert json.dumps(stack.sandbox.smart_configuration())

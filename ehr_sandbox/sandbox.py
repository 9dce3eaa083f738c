"""The sandbox EHR: a chart page, a SMART authorization server, a real FHIR server (SEKMET, in-process) behind a
token check, and a CDS Hooks client. For the demo and the tests only; production code never imports it."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.routing import Mount

from .auth_server import LaunchContext, SandboxAuthServer, SandboxClient
from .fhir_gate import FhirGate
from .search_outcomes import SearchOutcome, SearchOutcomes, is_chart_data, search_outcome_of
from .timeshift import DemoClock, shift_bundle

_TEMPLATES = Environment(loader=PackageLoader("ehr_sandbox", "templates"), autoescape=select_autoescape())
# Card detail is GitHub-flavoured Markdown (CDS Hooks); rendered as an EHR would, raw HTML disabled.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
_TEMPLATES.filters["markdown"] = lambda text: Markup(_MARKDOWN.render(text or ""))  # noqa: S704 - html disabled
_ESKETAMINE = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-02",
                           "display": "Spravato 56 MG Nasal Spray Kit"}], "text": "Spravato (esketamine) 56 mg"}
_COMPOUNDED = {"text": "Ketamine HCl 100 mg compounded oral troche"}


_TODAY_MINUS = re.compile(r"\{\{today\(\) - (\d+) days\}\}")


def _resolve_tokens(template: str, context: dict[str, Any], today: dt.date) -> str:
    """A prefetch template with its tokens filled in, as an EHR would: context fields and ``today() - N days``."""
    for name, value in context.items():
        if isinstance(value, str):
            template = template.replace(f"{{{{context.{name}}}}}", value)
    return _TODAY_MINUS.sub(lambda m: (today - dt.timedelta(days=int(m.group(1)))).isoformat(), template)


class Scenario(StrEnum):
    """What the demo's CDS call shows: a normal chart, or one of the situations a visitor should see handled."""

    NORMAL = "normal"
    FHIR_DOWN = "fhir-down"  # prefetch only Patient and Conditions; the FHIR server does not answer
    RESTRICTED_SCOPES = "restricted-scopes"  # no Observation prefetch; the token's scopes exclude Observation
    COMPOUNDED = "compounded"  # a compounded oral ketamine order


#: The prefetch keys the EHR still sends when its FHIR server is down: what the service needs to answer at all.
_REQUIRED_PREFETCH = ("patient", "conditions")
_RESTRICTED_SCOPE = " ".join(f"patient/{t}.rs" for t in ("Patient", "Condition", "MedicationStatement",
                                                           "MedicationRequest", "Medication", "AllergyIntolerance"))


@dataclass
class DraftOrder:
    """An order on the chart's order pad: proposed by the clinician or by an accepted card suggestion."""

    resource: dict[str, Any]
    removed: bool = False
    from_card: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource.get('id', '')}"

    @property
    def label(self) -> str:
        r = self.resource
        concept = r.get("medicationCodeableConcept") or r.get("code") or {}
        return str(concept.get("text") or r["resourceType"])


@dataclass
class ChartState:
    """What one patient's chart shows between page loads: the order pad and the last CDS exchange."""

    orders: list[DraftOrder] = field(default_factory=list)
    cds: dict[str, Any] | None = None
    hook: str | None = None
    scenario: Scenario = Scenario.NORMAL
    applied: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    public_base_url: str
    data_dir: Path
    fixtures: Path
    app_launch_url: str
    app_clients: list[SandboxClient] = field(default_factory=list)
    permission_v2: bool = True
    standalone_patient: str = "kc-01"
    cds_base_url: str | None = None
    authorize_post: bool = True
    access_token_ttl_s: int = 3600
    #: The sandbox's today and now: its scenarios (a session booked tomorrow, a dose 50 minutes ago) and the day
    #: the fixtures are moved to.
    clock: DemoClock = field(default_factory=DemoClock)
    #: The day the fixtures describe their patients on: when set, every date of every fixture is moved at load by
    #: (the clock's today - this day), so the charts are as recent on the day the sandbox runs. None: as written.
    fixtures_as_of: dt.date | None = None

    @property
    def base(self) -> str:
        return self.public_base_url.rstrip("/") + "/sandbox"

    @property
    def fhir_base(self) -> str:
        return self.base + "/fhir"


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        from sekmet.config import Settings as SekmetSettings
        from sekmet.config import SimulatorSettings, ValidationSettings
        from sekmet.main import create_app as create_sekmet

        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.id_key = RSAKey.generate_key(2048, parameters={"kid": "sandbox-idt-1", "use": "sig", "alg": "RS256"})
        self.cds_key = ECKey.generate_key("P-384", parameters={"kid": "sandbox-cds-1", "use": "sig", "alg": "ES384"})
        self.auth = SandboxAuthServer(issuer=config.fhir_base, fhir_base=config.fhir_base,
                                      token_url=config.base + "/auth/token", signing_key=self.id_key,
                                      access_token_ttl_s=config.access_token_ttl_s)
        for client in config.app_clients:
            self.auth.store.clients[client.client_id] = client
        self.sekmet = create_sekmet(SekmetSettings(
            base_url=config.fhir_base, host="127.0.0.1", data_dir=str(config.data_dir),
            db_path=str(config.data_dir / "sekmet.db"), own_private_key_path=str(config.data_dir / "sekmet.pem"),
            simulator=SimulatorSettings(enabled=False, auto=[]), validation=ValidationSettings(inbound="warn"),
            log_inbound=False))
        #: A fixture's own search outcome by patient id (fixture 53: results withheld), served again with that
        #: patient's searches on every path, so that the demo answers as evaluate does on the file (issue #20).
        self.search_outcomes: dict[str, SearchOutcome] = {}
        self.served = SearchOutcomes(self.sekmet, self.search_outcomes)
        self.internal = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.served), base_url="http://sekmet")
        self.patients: list[dict[str, Any]] = []
        #: How many days the loaded fixtures' dates were moved (0 until load, or when they are kept as written).
        self.shift_days = 0
        self.charts: dict[str, ChartState] = {}
        self.app = self._build()

    # -- data ---------------------------------------------------------------------------------------------------

    def fixture_shift_days(self) -> int:
        """By how many days the fixtures move at load: today (the sandbox's clock) - the fixtures' own day."""
        if self.config.fixtures_as_of is None:
            return 0
        return (self.config.clock.today() - self.config.fixtures_as_of).days

    async def load_fixtures(self) -> int:
        """Load every fixture patient into SEKMET (idempotent: PUT with fixed ids), its dates moved to today."""
        count = 0
        self.shift_days = self.fixture_shift_days()
        for path in sorted(self.config.fixtures.glob("[0-9]*.json")):
            if path.name.endswith(".expected.json"):
                continue
            bundle = shift_bundle(json.loads(path.read_text()), self.shift_days)
            entries = [e["resource"] for e in bundle["entry"] if is_chart_data(e)]
            tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in entries]}
            r = await self.internal.post("/fhir", json=tx, headers={"Content-Type": "application/fhir+json"})
            r.raise_for_status()
            patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
            if (outcome := search_outcome_of(bundle)) is not None:
                self.search_outcomes[patient["id"]] = outcome
            name = patient["name"][0]
            self.patients.append({"id": patient["id"], "name": f"{' '.join(name['given'])} {name['family']}",
                                  "gender": patient.get("gender"), "birthDate": patient.get("birthDate"),
                                  "story": path.stem[3:].replace("-", " ")})
            count += 1
        return count

    def smart_configuration(self) -> dict[str, Any]:
        caps = ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
                "client-confidential-asymmetric", "sso-openid-connect", "context-banner", "context-style",
                "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient", "permission-offline",
                "permission-patient", "permission-user", "permission-v1"]
        if self.config.permission_v2:
            caps.append("permission-v2")
        if self.config.authorize_post:
            caps.append("authorize-post")
        return {
            "issuer": self.config.fhir_base,
            "jwks_uri": self.config.base + "/auth/jwks",
            "authorization_endpoint": self.config.base + "/auth/authorize",
            "token_endpoint": self.config.base + "/auth/token",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
                                 "patient/*.rs", "patient/*.read", "user/*.rs", "user/*.read"],
            "capabilities": caps,
        }

    def cds_jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.cds_key]).as_dict(private=False))

    # -- the CDS client -----------------------------------------------------------------------------------------

    def chart_state(self, patient_id: str) -> ChartState:
        return self.charts.setdefault(patient_id, ChartState())

    def _ketamine_draft(self, patient_id: str, scenario: Scenario) -> DraftOrder:
        """The chart's draft ketamine order: kept from select to sign (the same id), replaced per scenario."""
        chart = self.chart_state(patient_id)
        concept = _COMPOUNDED if scenario is Scenario.COMPOUNDED else _ESKETAMINE
        for order in chart.orders:
            if order.resource["resourceType"] == "MedicationRequest" and not order.removed \
                    and order.resource.get("medicationCodeableConcept") == concept:
                return order
        sig = ("Dissolve 1 troche under the tongue at home twice weekly" if scenario is Scenario.COMPOUNDED
               else "56 mg intranasally twice weekly (induction)")
        order = DraftOrder({"resourceType": "MedicationRequest", "id": f"draft-{uuid.uuid4().hex[:8]}",
                            "status": "draft", "intent": "order", "subject": {"reference": f"Patient/{patient_id}"},
                            "medicationCodeableConcept": concept, "dosageInstruction": [{"text": sig}]})
        chart.orders = [o for o in chart.orders if o.resource["resourceType"] != "MedicationRequest"] + [order]
        chart.applied = []
        return order

    async def call_cds(self, patient_id: str, hook: str, scenario: Scenario = Scenario.NORMAL) -> dict[str, Any]:
        """Act as the EHR's CDS client at order time: the draft order on the order pad, the call."""
        order = self._ketamine_draft(patient_id, scenario)
        context: dict[str, Any] = {"userId": "Practitioner/sandbox-clinician", "patientId": patient_id,
                                   "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                                   "entry": [{"resource": order.resource}]}}
        if hook == "order-select":
            context["selections"] = [order.reference]
        return await self.call_hook(hook, context, scenario)

    async def book_session(self, patient_id: str) -> dict[str, Any]:
        """Book an esketamine session tomorrow at 09:00 in a one-hour slot, nothing noted about getting home: the
        session service's slot and transport cards (and the patient's assessment, when it is not 'criteria met')."""
        start = (self.config.clock.now() + dt.timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        appointment = {"resourceType": "Appointment", "id": f"appt-{uuid.uuid4().hex[:8]}", "status": "proposed",
                       "serviceType": [{"text": "Spravato (esketamine) treatment session"}],
                       "start": start.isoformat().replace("+00:00", "Z"),
                       "end": (start + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                       "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}]}
        context = {"userId": "Practitioner/sandbox-scheduler", "patientId": patient_id,
                   "appointments": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": appointment}]}}
        return await self.call_hook("appointment-book", context)

    async def discharge_session(self, patient_id: str, minutes_since_dose: int) -> dict[str, Any]:
        """Record an outpatient esketamine session in the FHIR server (a dose ``minutes_since_dose`` ago, BP before
        and, when 40 minutes have passed, after it), then discharge the encounter."""
        now = self.config.clock.now().replace(microsecond=0)
        dose_at = now - dt.timedelta(minutes=minutes_since_dose)
        eid = f"sess-{uuid.uuid4().hex[:8]}"

        def stamp(at: dt.datetime) -> str:
            return at.isoformat().replace("+00:00", "Z")

        def bp(oid: str, at: dt.datetime, systolic: int, diastolic: int) -> dict[str, Any]:
            return {"resourceType": "Observation", "id": oid, "status": "final", "effectiveDateTime": stamp(at),
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                    "subject": {"reference": f"Patient/{patient_id}"}, "encounter": {"reference": f"Encounter/{eid}"},
                    "component": [
                        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                         "valueQuantity": {"value": systolic, "unit": "mmHg"}},
                        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                         "valueQuantity": {"value": diastolic, "unit": "mmHg"}}]}
        resources: list[dict[str, Any]] = [
            {"resourceType": "Encounter", "id": eid, "status": "in-progress",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": f"Patient/{patient_id}"}, "period": {"start": stamp(dose_at)}},
            # One demo session's dose per patient: a second press replaces the first (a patient is not dosed twice
            # in an hour, and the discharge service counts every dose of the last day, in any encounter).
            {"resourceType": "MedicationAdministration", "id": f"sandbox-session-dose-{patient_id}"[:64],
             "status": "completed",
             "medicationCodeableConcept": _ESKETAMINE, "subject": {"reference": f"Patient/{patient_id}"},
             "context": {"reference": f"Encounter/{eid}"}, "effectiveDateTime": stamp(dose_at)},
            bp(f"{eid}-bp0", dose_at - dt.timedelta(minutes=10), 138, 86)]
        if minutes_since_dose >= 40:
            resources.append(bp(f"{eid}-bp40", dose_at + dt.timedelta(minutes=40), 152, 96))
        if minutes_since_dose >= 100:
            resources.append(bp(f"{eid}-bp100", dose_at + dt.timedelta(minutes=100), 134, 84))
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
        (await self.internal.post("/fhir", json=tx, headers={"Content-Type": "application/fhir+json"})
         ).raise_for_status()
        context = {"userId": "Practitioner/sandbox-nurse", "patientId": patient_id, "encounterId": eid}
        return await self.call_hook("encounter-discharge", context)

    async def call_hook(self, hook: str, context: dict[str, Any],
                        scenario: Scenario = Scenario.NORMAL) -> dict[str, Any]:
        """Act as the EHR's CDS client: discovery, prefetch from SEKMET (its templates' tokens resolved), a signed
        JWT, the call."""
        patient_id = str(context["patientId"])
        cds = (self.config.cds_base_url or self.config.public_base_url).rstrip("/")
        async with httpx.AsyncClient(timeout=10) as http:
            services = (await http.get(f"{cds}/cds-services")).json()["services"]
            service = next(s for s in services if s["hook"] == hook)
            prefetch: dict[str, Any] = {}
            for key, template in service.get("prefetch", {}).items():
                if scenario is Scenario.FHIR_DOWN and key not in _REQUIRED_PREFETCH:
                    continue
                if scenario is Scenario.RESTRICTED_SCOPES and template.startswith("Observation"):
                    continue
                r = await self.internal.get("/fhir/" + _resolve_tokens(template, context, self.config.clock.today()))
                prefetch[key] = r.json() if r.status_code == 200 else None
            url = f"{cds}/cds-services/{service['id']}"
            body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
                                    "prefetch": prefetch}
            if scenario is Scenario.FHIR_DOWN:
                # A server that refuses connections: the service must say "unknown", never "absent".
                body["fhirServer"] = "http://127.0.0.1:9/fhir"
                body["fhirAuthorization"] = {"access_token": "unused", "token_type": "Bearer", "expires_in": 300,
                                             "scope": "patient/*.rs", "subject": "cds-service"}
            elif scenario is Scenario.RESTRICTED_SCOPES:
                body["fhirServer"] = self.config.fhir_base
                body["fhirAuthorization"] = {"access_token": self.auth.cds_token(patient_id, _RESTRICTED_SCOPE),
                                             "token_type": "Bearer", "expires_in": 300, "scope": _RESTRICTED_SCOPE,
                                             "subject": "cds-service"}
            started = time.perf_counter()
            r = await http.post(url, json=body, headers={"Authorization": f"Bearer {self.cds_jwt(url)}"})
            shown_request = dict(body)
            if "fhirAuthorization" in shown_request:  # the demo's JSON panel never shows a token
                shown_request["fhirAuthorization"] = {**body["fhirAuthorization"], "access_token": "(redacted)"}
            return {"service": service["id"], "status": r.status_code, "body": r.json(), "url": url,
                    "request": shown_request, "ms": round((time.perf_counter() - started) * 1000)}

    def apply_suggestion(self, patient_id: str, card: str, actions: list[dict[str, Any]]) -> None:
        """What an EHR does with an accepted suggestion: delete strikes the draft order, create adds a draft."""
        chart = self.chart_state(patient_id)
        for action in actions:
            if action.get("type") == "delete":
                for order in chart.orders:
                    if order.reference == action.get("resourceId"):
                        order.removed = True
            elif action.get("type") == "create" and isinstance(action.get("resource"), dict):
                resource = {**action["resource"], "id": f"draft-{uuid.uuid4().hex[:8]}"}
                chart.orders.append(DraftOrder(resource, from_card=card))
            chart.applied.append(str(action.get("description", action.get("type"))))

    def cds_jwt(self, audience: str) -> str:
        now = int(time.time())
        return jwt.encode({"alg": "ES384", "kid": self.cds_key.kid, "typ": "JWT"},
                          {"iss": self.config.base, "aud": audience, "iat": now, "exp": now + 300,
                           "jti": secrets.token_urlsafe(16), "sub": "sandbox-ehr"}, self.cds_key, algorithms=["ES384"])

    async def send_feedback(self, service: str, card: str, outcome: str, suggestion: str | None,
                            reason: dict[str, Any] | None, comment: str | None = None) -> int:
        cds = (self.config.cds_base_url or self.config.public_base_url).rstrip("/")
        url = f"{cds}/cds-services/{service}/feedback"
        item: dict[str, Any] = {"card": card, "outcome": outcome,
                                "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if outcome == "accepted":
            item["acceptedSuggestions"] = [{"id": suggestion}] if suggestion else []
        elif reason:
            item["overrideReason"] = {"reason": reason, **({"userComment": comment[:500]} if comment else {})}
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(url, json={"feedback": [item]},
                                headers={"Authorization": f"Bearer {self.cds_jwt(url)}"})
        return r.status_code

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _patient(self, patient_id: str | None) -> dict[str, Any] | None:
        return next((p for p in self.patients if p["id"] == patient_id), None)

    def _page(self, name: str, **values: Any) -> HTMLResponse:
        html = _TEMPLATES.get_template(name).render(base=self.config.base, patients=self.patients,
                                                    today=self.config.clock.today(), **values)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def _build(self) -> FastAPI:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        auth = self.auth

        @app.get("/fhir/.well-known/smart-configuration")
        async def smart_config() -> JSONResponse:
            return JSONResponse(self.smart_configuration())

        @app.api_route("/auth/authorize", methods=["GET", "POST"])
        async def authorize(request: Request) -> Response:
            return await auth.authorize(request, self.config.standalone_patient)

        @app.post("/auth/token")
        async def token(request: Request) -> Response:
            return await auth.token(request)

        @app.get("/auth/jwks")
        async def jwks() -> JSONResponse:
            return JSONResponse(auth.jwks())

        @app.get("/cds-client/jwks.json")
        async def cds_jwks() -> JSONResponse:
            return JSONResponse(self.cds_jwks())

        def chart_page(patient: str | None, **values: Any) -> HTMLResponse:
            chosen = self._patient(patient)
            state = self.chart_state(patient) if chosen and patient else None
            return self._page("chart.html", patient=chosen, chart=state,
                              scenarios=[s.value for s in Scenario], **values)

        @app.get("/", response_class=HTMLResponse)
        async def chart(patient: str | None = None) -> HTMLResponse:
            return chart_page(patient)

        @app.post("/launch", response_class=HTMLResponse)
        async def launch(patient: str = Form(...), app_context: str | None = Form(None),
                         banner: str = Form("true"), error: str | None = Form(None)) -> HTMLResponse:
            chosen = self._patient(patient)
            context = LaunchContext(
                patient=patient, encounter=None, need_patient_banner=banner == "true",
                smart_style_url=self.config.base + "/static/style.json", intent="review", tenant="sandbox",
                app_context=app_context or None, simulate_error=error or None,
                fhir_context=({"reference": f"Patient/{patient}"},))
            launch_id = auth.new_launch(context)
            src = f"{self.config.app_launch_url}?iss={self.config.fhir_base}&launch={launch_id}"
            if chosen is None:
                return chart_page(None)
            return chart_page(patient, app_src=src)

        @app.get("/static/style.json")
        async def style() -> JSONResponse:
            return JSONResponse({"color_background": "#f4f6f8", "color_highlight": "#0b5cad",
                                 "color_text": "#1b1f24", "font_family_body": "system-ui, sans-serif",
                                 "font_family_heading": "system-ui, sans-serif", "dim_border_radius": "6px"})

        @app.post("/cds", response_class=HTMLResponse)
        async def cds(patient: str = Form(...), hook: str = Form("order-sign"),
                      scenario: str = Form("normal")) -> HTMLResponse:
            if self._patient(patient) is None or hook not in ("order-select", "order-sign"):
                return chart_page(None)
            chosen_scenario = Scenario(scenario) if scenario in Scenario.__members__.values() else Scenario.NORMAL
            result = await self.call_cds(patient, hook, chosen_scenario)
            state = self.chart_state(patient)
            state.cds, state.hook, state.scenario = result, hook, chosen_scenario
            return chart_page(patient)

        @app.post("/session", response_class=HTMLResponse)
        async def session(patient: str = Form(...), action: str = Form(...)) -> HTMLResponse:
            """Book a treatment session, or discharge one (the session services' hooks)."""
            if self._patient(patient) is None or action not in ("book", "discharge-early", "discharge-later"):
                return chart_page(None)
            if action == "book":
                result, hook = await self.book_session(patient), "appointment-book"
            else:
                minutes = 50 if action == "discharge-early" else 130
                result, hook = await self.discharge_session(patient, minutes), "encounter-discharge"
            state = self.chart_state(patient)
            state.cds, state.hook, state.scenario = result, hook, Scenario.NORMAL
            return chart_page(patient)

        @app.post("/feedback", response_class=HTMLResponse)
        async def feedback(patient: str = Form(...), service: str = Form(...), card: str = Form(...),
                           outcome: str = Form(...), suggestion: str | None = Form(None),
                           reason_code: str | None = Form(None), comment: str | None = Form(None)) -> HTMLResponse:
            if self._patient(patient) is None:
                return chart_page(None)
            state = self.chart_state(patient)
            shown = next((c for c in ((state.cds or {}).get("body") or {}).get("cards") or []
                          if c.get("uuid") == card), None)
            reason = None
            if shown is not None and reason_code:
                reason = next((r for r in shown.get("overrideReasons") or [] if r.get("code") == reason_code), None)
            status = await self.send_feedback(service, card, outcome, suggestion, reason, comment)
            if shown is not None and outcome == "accepted" and suggestion:
                chosen = next((s for s in shown.get("suggestions") or [] if s.get("uuid") == suggestion), None)
                if chosen is not None:
                    self.apply_suggestion(patient, card, chosen.get("actions") or [])
            return chart_page(patient, feedback_status=status, feedback_outcome=outcome)

        app.router.routes.append(Mount("", app=FhirGate(self.served, auth)))
        return app

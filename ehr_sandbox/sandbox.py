"""The sandbox EHR: a chart page, a SMART authorization server, a real FHIR server (SEKMET, in-process) behind a
token check, and a CDS Hooks client. For the demo and the tests only; production code never imports it."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from starlette.routing import Mount

from .auth_server import LaunchContext, SandboxAuthServer, SandboxClient
from .fhir_gate import FhirGate

_TEMPLATES = Environment(loader=PackageLoader("ehr_sandbox", "templates"), autoescape=select_autoescape())
_ESKETAMINE = {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-02",
                           "display": "Spravato 56 MG Nasal Spray Kit"}], "text": "Spravato (esketamine) 56 mg"}


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
        self.internal = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sekmet), base_url="http://sekmet")
        self.patients: list[dict[str, Any]] = []
        self.app = self._build()

    # -- data ---------------------------------------------------------------------------------------------------

    async def load_fixtures(self) -> int:
        """Load every fixture patient into SEKMET (idempotent: PUT with fixed ids)."""
        count = 0
        for path in sorted(self.config.fixtures.glob("[0-9]*.json")):
            if path.name.endswith(".expected.json"):
                continue
            bundle = json.loads(path.read_text())
            entries = [e["resource"] for e in bundle["entry"]]
            tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in entries]}
            r = await self.internal.post("/fhir", json=tx, headers={"Content-Type": "application/fhir+json"})
            r.raise_for_status()
            patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
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

    async def call_cds(self, patient_id: str, hook: str) -> dict[str, Any]:
        """Act as the EHR's CDS client: discovery, prefetch from SEKMET, a signed JWT, the call."""
        cds = (self.config.cds_base_url or self.config.public_base_url).rstrip("/")
        async with httpx.AsyncClient(timeout=10) as http:
            services = (await http.get(f"{cds}/cds-services")).json()["services"]
            service = next(s for s in services if s["hook"] == hook)
            prefetch: dict[str, Any] = {}
            for key, template in service.get("prefetch", {}).items():
                r = await self.internal.get("/fhir/" + template.replace("{{context.patientId}}", patient_id))
                prefetch[key] = r.json() if r.status_code == 200 else None
            order = {"resourceType": "MedicationRequest", "id": f"draft-{uuid.uuid4().hex[:8]}", "status": "draft",
                     "intent": "order", "subject": {"reference": f"Patient/{patient_id}"},
                     "medicationCodeableConcept": _ESKETAMINE,
                     "dosageInstruction": [{"text": "56 mg intranasally twice weekly (induction)"}]}
            context: dict[str, Any] = {"userId": "Practitioner/sandbox-clinician", "patientId": patient_id,
                                       "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                                       "entry": [{"resource": order}]}}
            if hook == "order-select":
                context["selections"] = [f"MedicationRequest/{order['id']}"]
            url = f"{cds}/cds-services/{service['id']}"
            body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch}
            started = time.perf_counter()
            r = await http.post(url, json=body, headers={"Authorization": f"Bearer {self.cds_jwt(url)}"})
            return {"service": service["id"], "status": r.status_code, "body": r.json(),
                    "ms": round((time.perf_counter() - started) * 1000)}

    def cds_jwt(self, audience: str) -> str:
        now = int(time.time())
        return jwt.encode({"alg": "ES384", "kid": self.cds_key.kid, "typ": "JWT"},
                          {"iss": self.config.base, "aud": audience, "iat": now, "exp": now + 300,
                           "jti": secrets.token_urlsafe(16), "sub": "sandbox-ehr"}, self.cds_key, algorithms=["ES384"])

    async def send_feedback(self, service: str, card: str, outcome: str, suggestion: str | None,
                            reason: dict[str, Any] | None) -> int:
        cds = (self.config.cds_base_url or self.config.public_base_url).rstrip("/")
        url = f"{cds}/cds-services/{service}/feedback"
        item: dict[str, Any] = {"card": card, "outcome": outcome,
                                "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if outcome == "accepted":
            item["acceptedSuggestions"] = [{"id": suggestion}] if suggestion else []
        elif reason:
            item["overrideReason"] = {"reason": reason}
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(url, json={"feedback": [item]},
                                headers={"Authorization": f"Bearer {self.cds_jwt(url)}"})
        return r.status_code

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _patient(self, patient_id: str | None) -> dict[str, Any] | None:
        return next((p for p in self.patients if p["id"] == patient_id), None)

    def _page(self, name: str, **values: Any) -> HTMLResponse:
        html = _TEMPLATES.get_template(name).render(base=self.config.base, patients=self.patients, **values)
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

        @app.get("/", response_class=HTMLResponse)
        async def chart(patient: str | None = None) -> HTMLResponse:
            chosen = self._patient(patient)
            return self._page("chart.html", patient=chosen)

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
            return self._page("chart.html", patient=chosen, app_src=src)

        @app.get("/static/style.json")
        async def style() -> JSONResponse:
            return JSONResponse({"color_background": "#f4f6f8", "color_highlight": "#0b5cad",
                                 "color_text": "#1b1f24", "font_family_body": "system-ui, sans-serif",
                                 "font_family_heading": "system-ui, sans-serif", "dim_border_radius": "6px"})

        @app.post("/cds", response_class=HTMLResponse)
        async def cds(patient: str = Form(...), hook: str = Form("order-sign")) -> HTMLResponse:
            chosen = self._patient(patient)
            result = await self.call_cds(patient, hook)
            return self._page("chart.html", patient=chosen, cds=result, hook=hook)

        @app.post("/feedback", response_class=HTMLResponse)
        async def feedback(patient: str = Form(...), service: str = Form(...), card: str = Form(...),
                           outcome: str = Form(...), suggestion: str | None = Form(None),
                           reason_code: str | None = Form(None), reason_display: str | None = Form(None),
                           reason_system: str | None = Form(None)) -> HTMLResponse:
            chosen = self._patient(patient)
            reason = ({"system": reason_system, "code": reason_code, "display": reason_display}
                      if reason_code else None)
            status = await self.send_feedback(service, card, outcome, suggestion, reason)
            return self._page("chart.html", patient=chosen, feedback_status=status, feedback_outcome=outcome)

        app.router.routes.append(Mount("", app=FhirGate(self.sekmet, auth)))
        return app

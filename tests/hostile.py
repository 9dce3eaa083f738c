"""Hostile requests, generated: hypothesis strategies shared by the fuzz tests and ``bench/fuzz.py``.

Each request is a (method, path, headers, body) for one endpoint of the app: malformed and deeply nested JSON,
wrong types, huge strings, invalid FHIR inside prefetch, wrong Content-Types and methods, oversized bodies.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey

from ketamine_cds.app import create_app
from ketamine_cds.settings import load_settings

SERVICES = ("ketamine-order-select", "ketamine-order-sign", "ketamine-patient-view", "ketamine-session-book",
            "ketamine-session-discharge")
CDS_ENDPOINTS = tuple(f"/cds-services/{s}" for s in SERVICES) + tuple(f"/cds-services/{s}/feedback"
                                                                       for s in SERVICES)
SMART_ENDPOINTS = ("/smart/launch", "/smart/callback", "/smart/app/{sid}", "/smart/app/{sid}/logout")


@dataclass(frozen=True)
class HostileRequest:
    method: str
    path: str
    content_type: str | None
    body: bytes
    query: dict[str, str]


#: Values that broke the session services (issue 21): instants at the ends of the calendar, strings no database
#: stores (NUL, a lone surrogate), a status that is not a code.
_EDGES = st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "9999-12-31", "a\u0000b", "\ud800",
                          "x" * 201, "completed", "booked", "2026-11-01T09:40:00Z"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
                                                                                       allow_infinity=False),
                     st.text(max_size=50), st.text(min_size=5000, max_size=20000).filter(bool), _EDGES)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                     max_leaves=25)
_ids = st.one_of(st.just("kc-01"), st.text(max_size=80), st.sampled_from(["../../admin", "kc-01/_history", "%2e%2e",
                                                                         "a" * 65, "", " ", "kc-01?x=1"]))
_resource_types = st.one_of(st.sampled_from(["Patient", "Condition", "Observation", "MedicationRequest",
                                             "MedicationStatement", "Medication", "Bundle", "OperationOutcome",
                                             "QuestionnaireResponse", "AllergyIntolerance", "MedicationAdministration",
                                             "Appointment", "Encounter", "ServiceRequest"]), _json)


@st.composite
def _fhir_resource(draw: st.DrawFn) -> Any:
    resource: dict[str, Any] = {"resourceType": draw(_resource_types)}
    for key in draw(st.lists(st.sampled_from(["id", "subject", "patient", "code", "status", "valueQuantity",
                                              "component", "effectiveDateTime", "medicationReference", "dosage",
                                              "dosageInstruction", "entry", "link", "contained", "authoredOn",
                                              "medicationCodeableConcept", "clinicalStatus", "item", "context",
                                              "encounter", "start", "end", "minutesDuration", "participant",
                                              "basedOn", "class", "effectivePeriod", "serviceType"]),
                             max_size=6)):
        resource[key] = draw(_json)
    return resource


def _valid_prefetch() -> dict[str, Any]:
    from .cds_hooks.conftest import prefetch_for

    return prefetch_for("01")[1]


def _mostly(valid: Any, hostile: st.SearchStrategy[Any], share: int = 7) -> st.SearchStrategy[Any]:
    """``valid`` share/10 of the time, else hostile: enough requests get past the door to reach the rules."""
    return st.integers(0, 9).flatmap(lambda n: st.just(valid) if n < share else hostile)


_ESKETAMINE_ORDER = {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
                     "subject": {"reference": "Patient/kc-01"},
                     "medicationCodeableConcept": {"text": "Spravato 56 MG nasal spray"}}


_SESSION_APPOINTMENT = {"resourceType": "Appointment", "id": "a-1", "status": "proposed",
                        "serviceType": [{"text": "Spravato session"}], "start": "2026-11-03T09:00:00Z",
                        "end": "2026-11-03T10:00:00Z", "participant": [{"status": "accepted"}]}


_SESSION_TEMPLATES: tuple[dict[str, Any], ...] = (
    _SESSION_APPOINTMENT | {"participant": [{"actor": {"reference": "Patient/kc-01"}, "status": "accepted"}]},
    {"resourceType": "MedicationAdministration", "id": "d-1", "status": "completed",
     "medicationCodeableConcept": {"text": "Spravato 56 mg"}, "subject": {"reference": "Patient/kc-01"},
     "context": {"reference": "Encounter/enc-1"}, "effectiveDateTime": "2026-11-01T09:40:00Z"},
    {"resourceType": "Observation", "id": "bp-1", "status": "final", "subject": {"reference": "Patient/kc-01"},
     "encounter": {"reference": "Encounter/enc-1"}, "effectiveDateTime": "2026-11-01T10:20:00Z",
     "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
     "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 150, "unit": "mmHg"}}]},
    {"resourceType": "Encounter", "id": "enc-1", "status": "in-progress", "class": {"code": "AMB"},
     "subject": {"reference": "Patient/kc-01"}},
    {"resourceType": "ServiceRequest", "id": "o-1", "status": "active", "intent": "order",
     "subject": {"reference": "Patient/kc-01"}, "code": {"text": "Esketamine 56 mg"}},
)
_SESSION_FIELDS = ("status", "start", "end", "minutesDuration", "effectiveDateTime", "effectivePeriod", "subject",
                   "context", "encounter", "participant", "basedOn", "id", "class", "medicationCodeableConcept")


@st.composite
def _session_resource(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible session record (appointment, dose, reading, encounter, order) with a field or two hostile: the
    shapes that reached the session mapping and rules and broke them ([] and {} statuses, year 9999, another
    patient's subject)."""
    resource = dict(draw(st.sampled_from(_SESSION_TEMPLATES)))
    hostile = st.one_of(_EDGES, st.just([]), st.just({}), st.just({"reference": "Patient/someone-else"}),
                        st.just({"start": "9999-12-31T23:59:59Z", "end": "0001-01-01T00:00:00+14:00"}), _json)
    for key in draw(st.lists(st.sampled_from(_SESSION_FIELDS), max_size=2)):
        resource[key] = draw(hostile)
    return resource


def _searchset(entries: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda e: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in e]},
                     st.lists(entries, max_size=4))


@st.composite
def _cds_body(draw: st.DrawFn, service: str) -> Any:
    hook = {"ketamine-order-select": "order-select", "ketamine-order-sign": "order-sign",
            "ketamine-session-book": "appointment-book",
            "ketamine-session-discharge": "encounter-discharge"}.get(service, "patient-view")
    context: dict[str, Any] = {"patientId": draw(_mostly("kc-01", _ids)),
                               "userId": draw(_mostly("Practitioner/1", _json))}
    orders = st.lists(st.one_of(st.just(_ESKETAMINE_ORDER), _fhir_resource()), min_size=1, max_size=3)
    context["draftOrders"] = draw(_mostly({"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": _ESKETAMINE_ORDER}]}, st.one_of(_json, st.builds(
        lambda entries: {"resourceType": "Bundle", "entry": [{"resource": r} for r in entries]}, orders))))
    if draw(st.integers(0, 9)) < 9:
        context["selections"] = draw(_mostly(["MedicationRequest/draft-1"],
                                             st.one_of(_json, st.lists(st.text(max_size=40), max_size=3))))
    if hook == "appointment-book":
        appointments = st.lists(st.one_of(st.just(_SESSION_APPOINTMENT), _session_resource(), _fhir_resource()),
                                min_size=1, max_size=3)
        context["appointments"] = draw(_mostly({"resourceType": "Bundle", "type": "collection",
                                                "entry": [{"resource": _SESSION_APPOINTMENT}]},
                                               st.one_of(_json, st.builds(lambda entries: {
                                                   "resourceType": "Bundle",
                                                   "entry": [{"resource": r} for r in entries]}, appointments))))
    if hook == "encounter-discharge":
        context["encounterId"] = draw(_mostly("enc-1", _ids))
    body: dict[str, Any] = {"hook": draw(_mostly(hook, _json, 8)), "hookInstance": draw(_mostly("h-1", _json, 8)),
                            "context": context}
    keys = ["patient", "conditions", "medicationRequests", "medicationStatements", "phq9", "phq9Responses",
            "bloodPressure", "pregnancyTests", "allergies", "junk"]
    bundles = st.builds(lambda e: {"resourceType": "Bundle", "type": "searchset", "entry": e},
                        st.lists(st.builds(lambda r, u: {"resource": r, "fullUrl": u}, _fhir_resource(),
                                           st.one_of(st.none(), _json)), max_size=4))
    values = st.one_of(_json, _fhir_resource(), bundles, st.just({"resourceType": "Patient", "id": "kc-01",
                                                                   "gender": "female"}))
    # Mostly a whole, valid prefetch with a few keys replaced by hostile values: the mapping and rules get them.
    changed = draw(st.dictionaries(st.sampled_from(keys), values, max_size=3))
    if hook in ("appointment-book", "encounter-discharge"):
        # The session services' own keys, with session records a field or two hostile.
        records = _searchset(_session_resource())
        changed |= draw(st.fixed_dictionaries({}, optional={
            "encounter": st.one_of(_session_resource(), _json), "administrations": records,
            "encounterBloodPressures": records, "appointments": records}))
    body["prefetch"] = draw(_mostly({**_valid_prefetch(), **changed},
                                    st.one_of(_json, st.dictionaries(st.sampled_from(keys), values, max_size=6)), 7))
    if draw(st.booleans()):
        body["fhirServer"] = draw(_mostly("http://127.0.0.1:9/fhir", _json, 8))
        body["fhirAuthorization"] = draw(_mostly({"access_token": "t", "token_type": "Bearer"}, _json, 8))
    if draw(st.integers(0, 9)) == 0:
        body = draw(_json)
    return body


@st.composite
def _feedback_body(draw: st.DrawFn) -> Any:
    items = st.fixed_dictionaries({"card": st.one_of(st.uuids().map(str), _json),
                                   "outcome": st.one_of(st.sampled_from(["accepted", "overridden"]), _json),
                                   "outcomeTimestamp": st.one_of(st.just("2026-11-01T10:00:00Z"), _json)},
                                  optional={"overrideReason": st.one_of(_json, st.fixed_dictionaries(
                                      {"reason": st.fixed_dictionaries({"code": _EDGES}, optional={
                                          "display": _EDGES})}, optional={"userComment": _EDGES})),
                                      "acceptedSuggestions": st.one_of(_json, st.lists(st.fixed_dictionaries(
                                          {"id": _EDGES}), max_size=2))})
    return draw(st.one_of(st.fixed_dictionaries({"feedback": st.one_of(st.lists(items, max_size=3), _json)}), _json))


def _raw_body(value: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    deep = st.integers(10, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    arrays = st.integers(10, 50000).map(lambda n: b"[" * n + b"]" * n)
    broken = st.sampled_from([b"", b"{", b'{"hook": NaN}', b'{"x": Infinity}', b"\xff\xfe", b"null", b"[]",
                              b'{"hook":"order-sign"' + b" " * 10, b"<xml/>"])
    encoded = value.map(lambda v: json.dumps(v).encode())
    return st.integers(0, 9).flatmap(lambda n: encoded if n < 7 else st.one_of(deep, arrays, broken,
                                                                              st.binary(max_size=300)))


@st.composite
def hostile_cds_request(draw: st.DrawFn, path: str) -> HostileRequest:
    service = path.split("/")[2]
    body = draw(_raw_body(_feedback_body() if path.endswith("/feedback") else _cds_body(service)))
    content_type = draw(_mostly("application/json", st.one_of(st.none(), st.sampled_from([
        "text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data",
        "application/fhir+json; charset=utf-8"])), 8))
    method = draw(_mostly("POST", st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]), 9))
    return HostileRequest(method, path, content_type, body, {})


@st.composite
def hostile_smart_request(draw: st.DrawFn, path: str) -> HostileRequest:
    params = draw(st.dictionaries(st.sampled_from(["iss", "launch", "state", "code", "error", "error_description",
                                                   "policy", "csrf"]), st.text(max_size=300), max_size=4))
    sid = draw(st.one_of(st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s and s not in (".", "..")),
                         st.just("x")))
    method = "POST" if path.endswith("/logout") and draw(st.booleans()) else draw(st.sampled_from(["GET", "POST"]))
    body = draw(st.binary(max_size=200))
    return HostileRequest(method, path.replace("{sid}", quote(sid, safe="")), "application/x-www-form-urlencoded",
                          body, params)


BASE = "http://cds.test"
ISSUER = "https://ehr.test"
KEY = ECKey.generate_key("P-384", parameters={"kid": "fuzz", "use": "sig"})


class Target:
    """The app in-process on one event loop; each request carries a fresh, valid JWT so the body is what is tested.
    ``database_url``: a PostgreSQL database for the shared state (migrated here), else the embedded SQLite file."""

    def __init__(self, work: Path, database_url: str | None = None) -> None:
        (work / "jwks.json").write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
        storage = ""
        if database_url:
            from cryptography.fernet import Fernet

            from storage import Sealer, open_storage

            (work / "storage.key").write_bytes(Fernet.generate_key())
            open_storage(database_url, Sealer((work / "storage.key").read_bytes()), migrate=True).close()
            storage = f'[storage]\ndatabase_url = "{database_url}"\nencryption_key_file = "storage.key"\n'

        (work / "ketamine-cds.toml").write_text(f"""
[cds]
public_base_url = "{BASE}"
feedback_db = "feedback.sqlite3"
audit_log = "audit.jsonl"
fhir_budget_s = 0.5
[[cds.clients]]
issuer = "{ISSUER}"
jwks_file = "jwks.json"
fhir_server_networks = ["127.0.0.0/8"]
[smart]
allowed_issuers = ["http://127.0.0.1:9/fhir"]
{storage}""")
        self.app = create_app(load_settings(work / "ketamine-cds.toml"), configure_logging=False)
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    def token(self, path: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": BASE + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode({"alg": "ES384", "kid": "fuzz", "typ": "JWT"}, claims, KEY, algorithms=["ES384"])

    def send(self, req: HostileRequest) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(req.path)}"} if req.path.startswith("/cds") else {}
        if req.content_type:
            headers["Content-Type"] = req.content_type
        return self.loop.run_until_complete(self.client.request(
            req.method, req.path, content=req.body if req.method != "GET" else None, headers=headers,
            params=req.query))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.app.state.options.http.aclose())
        self.loop.run_until_complete(self.app.state.storage.aclose())
        self.loop.close()

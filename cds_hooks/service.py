"""The CDS Hooks HTTP face: discovery, the three services, and feedback.

Request handling, in order: unknown service → 404; the caller's JWT → 401 with no detail; body over the limit →
413; malformed JSON, a wrong hook or missing context → 400; Patient or Conditions unobtainable → 412. Every error
body is an OperationOutcome. An order that is not for ketamine or esketamine gets ``{"cards": []}`` at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from eligibility import Policy, assess_pool
from fhir_mapping import (
    BOOKING_SEARCHES,
    DISCHARGE_SEARCHES,
    SEARCHES,
    KetamineOrder,
    Search,
    ketamine_order,
)
from storage import CardNotIssued, FeedbackRecord, Storage, StorageUnavailable

from .answering import fetch_data, no_cards, require_patient, send_cards
from .audit import audit, bounded, patient_hash
from .auth import JwtRejected, JwtVerifier, VerifiedCaller
from .cards import CardContext, order_cards, patient_view_card
from .errors import (
    BadRequest,
    CdsError,
    RequiredDataMissing,
    ServiceUnavailable,
    Unauthorized,
    UnknownCard,
    UnknownService,
    error_response,
)
from .models import FHIR_ID, FHIR_REFERENCE, Card, CdsRequest, FeedbackRequest, Hook, Indicator
from .sessions import answer_session


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    id: str
    hook: Hook
    title: str
    description: str
    usage_requirements: str
    searches: tuple[Search, ...] = SEARCHES

    def discovery(self) -> dict[str, Any]:
        return {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                "usageRequirements": self.usage_requirements,
                "prefetch": {s.key: s.template() for s in self.searches}}


_USAGE = ("Grant read access to Patient, Condition, MedicationStatement, MedicationRequest, Observation and "
          "AllergyIntolerance for the patient (prefetch or fhirAuthorization). Without Patient and Condition the "
          "service answers 412.")
SERVICES: dict[str, ServiceDefinition] = {s.id: s for s in (
    ServiceDefinition("ketamine-order-select", Hook.ORDER_SELECT, "Ketamine/esketamine eligibility (order select)",
                      "When a ketamine or esketamine order is selected: treatment-resistant depression, severity, "
                      "contraindications and missing work-up, as guidance cards.", _USAGE),
    ServiceDefinition("ketamine-order-sign", Hook.ORDER_SIGN, "Ketamine/esketamine eligibility (order sign)",
                      "When a ketamine or esketamine order is signed: the same checks on every draft order.", _USAGE),
    ServiceDefinition("ketamine-patient-view", Hook.PATIENT_VIEW, "Ketamine/esketamine monitoring reminders",
                      "Silent, except a monitoring reminder for active ketamine/esketamine therapy (and, when the "
                      "policy enables it, a note that treatment-resistant depression criteria are met).", _USAGE),
    ServiceDefinition("ketamine-session-book", Hook.APPOINTMENT_BOOK, "Esketamine/ketamine session booking",
                      "When a ketamine or esketamine treatment session is booked: the current assessment when it is "
                      "not 'criteria met', a slot too short for the dose and 2 hours of monitoring, more sessions "
                      "than the dosing schedule allows, an elevated recent blood pressure, transport home.",
                      _USAGE + " Also Appointment (the patient's other sessions).", BOOKING_SEARCHES),
    ServiceDefinition("ketamine-session-discharge", Hook.ENCOUNTER_DISCHARGE, "Esketamine/ketamine session discharge",
                      "When a patient is discharged from an encounter in which ketamine or esketamine was given: "
                      "2 hours of monitoring after the last dose, blood pressure after the dose, the REMS "
                      "monitoring form and no driving for outpatients. Silent when no dose was given.",
                      "Grant read access to Patient, Encounter, MedicationAdministration and Observation for the "
                      "patient. Without Patient the service answers 412.", DISCHARGE_SEARCHES),
)}
_REQUIRED_CONTEXT = {
    Hook.PATIENT_VIEW: ("userId", "patientId"),
    Hook.ORDER_SELECT: ("userId", "patientId", "selections", "draftOrders"),
    Hook.ORDER_SIGN: ("userId", "patientId", "draftOrders"),
    Hook.APPOINTMENT_BOOK: ("userId", "patientId", "appointments"),
    Hook.ENCOUNTER_DISCHARGE: ("userId", "patientId", "encounterId"),
}
_ORDER_HOOKS = frozenset({Hook.ORDER_SELECT, Hook.ORDER_SIGN})


@dataclass(slots=True)
class CdsOptions:
    public_base_url: str
    policy: Policy
    storage: Storage
    verifier: JwtVerifier | None
    discovery_requires_auth: bool = False
    max_body_bytes: int = 5_000_000
    fhir_budget_s: float = 2.5
    smart_launch_url: str | None = None
    audit_salt: str = "ketamine-cds"
    fhir_max_response_bytes: int = 20_000_000
    fhir_max_total_bytes: int = 60_000_000
    http: httpx.AsyncClient | None = None
    today: Callable[[], dt.date] = field(default=dt.date.today)
    #: order-sign leaves out a non-critical card that order-select showed, unchanged, this recently.
    repeat_window_s: float = 300.0
    #: "Now" for the session rules: the request time (tests pass a clock).
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    #: ``system|code`` of appointment types that are ketamine/esketamine treatment sessions ([sessions] settings).
    session_codes: frozenset[str] = frozenset()
    #: The time zone of the times written on session cards (None: the offset each time was recorded with).
    display_tz: dt.tzinfo | None = None
    #: At most this many entries in an appointment-book request's ``context.appointments`` (over it: 400). Each
    #: appointment is validated and read, and each can give several cards: unbounded, one request stalled a replica.
    max_session_appointments: int = 50
    #: At most this many cards in one answer (over it: the most urgent, and one card saying what was left out).
    max_cards: int = 20

    def endpoint(self, path: str) -> str:
        return self.public_base_url.rstrip("/") + path


_Body = TypeVar("_Body", CdsRequest, FeedbackRequest)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "too-costly", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "too-costly", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


MAX_JSON_DEPTH = 64


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


def _json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when no array or object nests deeper than ``limit``, checked before parsing: a body nested thousands
    deep must not reach the recursive parser (or the validators after it).

    Escapes and strings are dropped, then everything but brackets; each pass removes the innermost pairs, so the
    number of passes is the depth. It all runs in C (bytes methods, the regex engine): about 1x ``json.loads``.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return True
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shape, removed = _INNERMOST_PAIR.subn(b"", shape)
        if not shape or not removed:
            return True  # balanced within the limit, or not JSON at all (the parser will say so)
    return not shape


def _json_body(body: bytes) -> Any:
    if not _json_depth_ok(body):
        raise BadRequest(400, "structure", f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(400, "structure", "request body is not valid JSON") from exc


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259); Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def _check_content_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("application/json", "application/fhir+json"):
        raise BadRequest(415, "not-supported", "Content-Type must be application/json")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)




def _check_context(req: CdsRequest, service: ServiceDefinition, max_appointments: int = 50) -> None:
    if req.hook != service.hook:
        raise BadRequest(400, "invalid", f"service {service.id} answers hook {service.hook}, not {req.hook}")
    context = req.context
    missing = [f for f in _REQUIRED_CONTEXT[service.hook] if f not in context]
    if missing:
        raise BadRequest(400, "required", f"context is missing {', '.join(missing)}")
    patient = context.get("patientId")
    if not isinstance(patient, str) or not FHIR_ID.match(patient):
        raise BadRequest(400, "invalid", "context.patientId must be a FHIR id ([A-Za-z0-9-.]{1,64})")
    for name in ("encounterId", "appointmentId"):
        if name in context and context[name] is not None and (
                not isinstance(context[name], str) or not FHIR_ID.match(context[name])):
            raise BadRequest(400, "invalid", f"context.{name} must be a FHIR id")
    user = context.get("userId")
    if not isinstance(user, str) or not FHIR_REFERENCE.match(user):
        raise BadRequest(400, "invalid", "context.userId must be a FHIR reference such as Practitioner/123")
    if service.hook is Hook.APPOINTMENT_BOOK:
        appointments = context.get("appointments")
        if not isinstance(appointments, dict) or appointments.get("resourceType") != "Bundle" or not isinstance(
                appointments.get("entry", []), list):
            raise BadRequest(400, "invalid", "context.appointments must be a Bundle of Appointments")
        if len(appointments.get("entry", [])) > max_appointments:
            raise BadRequest(400, "too-costly", f"context.appointments holds {len(appointments['entry'])} entries; "
                                                f"at most {max_appointments} are accepted in one request")
    if service.hook is Hook.ENCOUNTER_DISCHARGE and not isinstance(context.get("encounterId"), str):
        raise BadRequest(400, "invalid", "context.encounterId must be a FHIR id")
    if service.hook in _ORDER_HOOKS:
        draft = context.get("draftOrders")
        if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
            raise BadRequest(400, "invalid", "context.draftOrders must be a Bundle")
        if "entry" in draft and not isinstance(draft["entry"], list):
            raise BadRequest(400, "invalid", "context.draftOrders.entry must be an array")
    if service.hook is Hook.ORDER_SELECT:
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(isinstance(x, str) and len(x) <= 200 for x in selections):
            raise BadRequest(400, "invalid", "context.selections must be an array of references")


def _ketamine_orders(req: CdsRequest) -> list[KetamineOrder]:
    entries = req.context["draftOrders"].get("entry") or []
    resources: list[dict[str, Any]] = [
        e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    if req.hook == Hook.ORDER_SELECT:
        selected = {str(s) for s in req.context.get("selections") or []}
        resources = [r for r in resources if f"{r.get('resourceType')}/{r.get('id')}" in selected]
    return [o for r in resources if (o := ketamine_order(r)) is not None]


def _card_digest(caller: VerifiedCaller | None, ctx: CardContext, card: Card) -> str:
    """Who was shown what, for which draft orders: the same card for the same orders hashes the same (its uuid,
    links and suggestion ids, fresh on every call, are left out)."""
    content = json.dumps({
        "issuer": caller.issuer if caller else None, "tenant": caller.tenant if caller else None,
        "patient": ctx.patient_id, "orders": sorted(o.reference for o in ctx.orders), "kind": card.kind,
        "indicator": card.indicator, "summary": card.summary, "detail": card.detail,
    }, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


async def _without_repeats(options: CdsOptions, service: ServiceDefinition, caller: VerifiedCaller | None,
                           ctx: CardContext, cards: list[Card]) -> tuple[list[Card], int]:
    """order-select remembers what it showed; order-sign leaves out those cards when unchanged, except critical
    ones (a contraindication is shown again at the moment of signing, whatever was shown before)."""
    if options.repeat_window_s <= 0 or service.hook is Hook.PATIENT_VIEW or not cards:
        return cards, 0
    digests = {card.uuid: _card_digest(caller, ctx, card) for card in cards}
    if service.hook is Hook.ORDER_SELECT:
        await options.storage.remember_shown(digests.values(), options.repeat_window_s)
        return cards, 0
    shown = await options.storage.recently_shown(
        d for c in cards if c.indicator is not Indicator.CRITICAL for d in (digests[c.uuid],))
    kept = [c for c in cards if digests[c.uuid] not in shown]
    return kept, len(cards) - len(kept)


def _text_field(value: Any, key: str) -> str | None:
    found = value.get(key) if isinstance(value, dict) else None
    return found[:500] if isinstance(found, str) and found else None


async def handle_cds_error(request: Request, exc: Exception) -> Response:
    """The one translation of the error tree (``errors.py``) into responses, with its audit line."""
    assert isinstance(exc, CdsError)
    event = {Unauthorized: "auth_rejected", UnknownCard: "feedback_refused"}.get(type(exc), "bad_request")
    if not isinstance(exc, RequiredDataMissing):  # audited where it is decided, with the data gaps
        # The service id and path come from the caller, often unauthenticated: bounded (and hashed past the bound).
        fields = {k: bounded(v, 200) if isinstance(v, str) else v for k, v in exc.audit_fields().items()}
        audit(event, service=bounded(request.path_params.get("service_id")), path=bounded(request.url.path, 120),
              **fields)
    return error_response(exc)


def build_router(options: CdsOptions) -> APIRouter:
    router = APIRouter()

    async def authenticate(request: Request, path: str) -> VerifiedCaller | None:
        if options.verifier is None:
            return None
        return await options.verifier.verify(request.headers.get("authorization"), options.endpoint(path))

    async def intake(request: Request, service_id: str, path: str, model: type[_Body]) -> tuple[
            VerifiedCaller | None, _Body]:
        """The caller's JWT, then the body within the size limit, parsed and validated; raises a CdsError."""
        try:
            caller = await authenticate(request, path)
        except JwtRejected as exc:
            raise Unauthorized(exc.reason) from exc
        _check_content_type(request)
        raw = _json_body(await _read_body(request, options.max_body_bytes))
        try:
            body = model.model_validate(raw)
        except ValidationError as exc:
            raise BadRequest(400, "invalid", _validation_message(exc)) from exc
        if isinstance(body, CdsRequest):
            _check_context(body, SERVICES[service_id], options.max_session_appointments)
        return caller, body

    def service_named(service_id: str) -> ServiceDefinition:
        service = SERVICES.get(service_id)
        if service is None:
            raise UnknownService(f"no CDS service {bounded(service_id)!r}")
        return service

    @router.get("/cds-services", response_model=None)
    async def discovery(request: Request) -> Response | dict[str, Any]:
        if options.discovery_requires_auth:
            try:
                await authenticate(request, "/cds-services")
            except JwtRejected as exc:
                raise Unauthorized(exc.reason) from exc
        return {"services": [s.discovery() for s in SERVICES.values()]}

    @router.post("/cds-services/{service_id}", response_model=None)
    async def call_service(service_id: str, request: Request) -> Response:
        started = time.perf_counter()
        service = service_named(service_id)
        try:
            caller, req = await intake(request, service_id, f"/cds-services/{service_id}", CdsRequest)
            return await _answer(options, service, req, caller, started)
        except StorageUnavailable as exc:
            raise ServiceUnavailable("shared state is unavailable; retry shortly") from exc

    @router.post("/cds-services/{service_id}/feedback", response_model=None)
    async def feedback(service_id: str, request: Request) -> Response:
        service_named(service_id)
        try:
            return await _store_feedback(service_id, request)
        except StorageUnavailable as exc:
            raise ServiceUnavailable("shared state is unavailable; retry shortly") from exc

    async def _store_feedback(service_id: str, request: Request) -> Response:
        caller, body = await intake(request, service_id, f"/cds-services/{service_id}/feedback", FeedbackRequest)
        records = [
            FeedbackRecord(
                card_uuid=item.card,
                outcome=item.outcome,
                outcome_timestamp=item.outcomeTimestamp,
                override_code=_text_field(item.overrideReason.reason, "code") if item.overrideReason else None,
                # The public CDS Hooks sandbox sends only the code: no display is stored then (never "None").
                override_display=_text_field(item.overrideReason.reason, "display") if item.overrideReason
                else None,
                user_comment=item.overrideReason.userComment if item.overrideReason else None,
                accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or []),
            )
            for item in body.feedback
        ]
        try:
            await options.storage.record_feedback(service_id, caller.issuer if caller else None, records)
        except CardNotIssued as exc:
            raise UnknownCard(exc.card_uuid) from exc
        audit("feedback", service=service_id, items=len(records), issuer=caller.issuer if caller else None,
              outcomes=[r.outcome for r in records])
        return JSONResponse({}, status_code=200)

    return router


async def _answer(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
                  caller: VerifiedCaller | None, started: float) -> Response:
    patient_id = str(req.context["patientId"])
    log: dict[str, Any] = {
        "service": service.id, "hookInstance": req.hookInstance, "issuer": caller.issuer if caller else None,
        "tenant": caller.tenant if caller else None, "patient": patient_hash(patient_id, options.audit_salt),
    }
    if service.hook in (Hook.APPOINTMENT_BOOK, Hook.ENCOUNTER_DISCHARGE):
        return await answer_session(options, service, req, caller, started, log)
    orders: list[KetamineOrder] = []
    if service.hook is not Hook.PATIENT_VIEW:
        orders = _ketamine_orders(req)
        if not orders:
            return no_cards(log, started)
    data = await fetch_data(options, req, patient_id)
    gaps = require_patient(data, patient_id, log, started)
    as_of = options.today()
    assessment, _ = assess_pool(data.pool, options.policy, as_of, patient_id)
    ctx = CardContext(
        hook_instance=req.hookInstance, patient_id=patient_id, user_id=req.context.get("userId"),
        encounter_id=req.context.get("encounterId"), orders=tuple(orders),
        smart_launch_url=options.smart_launch_url,
    )
    if service.hook is Hook.PATIENT_VIEW:
        card = patient_view_card(assessment, options.policy, ctx)
        cards = [card] if card else []
    else:
        cards = order_cards(assessment, options.policy, ctx)
    cards, repeated = await _without_repeats(options, service, caller, ctx, cards)
    return await send_cards(options, service, req, caller, cards, log, started, verdict=assessment.verdict.value,
                            cards_not_repeated=repeated, data_gaps=gaps, fetched=len(data.queries))

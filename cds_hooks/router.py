"""The CDS Hooks HTTP routes: discovery, the five services, and feedback. The router reads and checks a call,
then dispatches it to its service's answer (``orders.py`` or ``sessions.py``); it answers nothing itself.

Request handling, in order: unknown service → 404; the caller's JWT → 401 with no detail; body over the limit →
413; malformed JSON, a wrong hook or missing context → 400; then the service's answer (Patient or Conditions
unobtainable → 412). Every error body is an OperationOutcome.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from storage import CardNotIssued, FeedbackRecord, StorageUnavailable

from .answering import call_log
from .audit import AuditEvent, audit, bounded
from .auth import JwtRejected, VerifiedCaller
from .definitions import SERVICES, CdsOptions, ServiceDefinition
from .errors import (
    BadRequest,
    CdsError,
    IssueType,
    PayloadTooLarge,
    RequiredDataMissing,
    ServiceUnavailable,
    Unauthorized,
    UnknownCard,
    UnknownService,
    UnsupportedMediaType,
    error_response,
)
from .fhir_servers import FhirServerRefused
from .models import FHIR_ID, FHIR_REFERENCE, CdsRequest, FeedbackRequest, Hook
from .orders import answer_order
from .sessions import answer_session

_REQUIRED_CONTEXT = {
    Hook.PATIENT_VIEW: ("userId", "patientId"),
    Hook.ORDER_SELECT: ("userId", "patientId", "selections", "draftOrders"),
    Hook.ORDER_SIGN: ("userId", "patientId", "draftOrders"),
    Hook.APPOINTMENT_BOOK: ("userId", "patientId", "appointments"),
    Hook.ENCOUNTER_DISCHARGE: ("userId", "patientId", "encounterId"),
}


_Body = TypeVar("_Body", CdsRequest, FeedbackRequest)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
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
        raise BadRequest(IssueType.STRUCTURE, f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(IssueType.STRUCTURE, "request body is not valid JSON") from exc


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259); Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def _check_content_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("application/json", "application/fhir+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def _check_ids(context: dict[str, Any]) -> None:
    patient = context.get("patientId")
    if not isinstance(patient, str) or not FHIR_ID.match(patient):
        raise BadRequest(IssueType.INVALID, "context.patientId must be a FHIR id ([A-Za-z0-9-.]{1,64})")
    for name in ("encounterId", "appointmentId"):
        if name in context and context[name] is not None and (
                not isinstance(context[name], str) or not FHIR_ID.match(context[name])):
            raise BadRequest(IssueType.INVALID, f"context.{name} must be a FHIR id")
    user = context.get("userId")
    if not isinstance(user, str) or not FHIR_REFERENCE.match(user):
        raise BadRequest(IssueType.INVALID, "context.userId must be a FHIR reference such as Practitioner/123")


def _check_appointments(context: dict[str, Any], max_appointments: int) -> None:
    appointments = context.get("appointments")
    if not isinstance(appointments, dict) or appointments.get("resourceType") != "Bundle" or not isinstance(
            appointments.get("entry", []), list):
        raise BadRequest(IssueType.INVALID, "context.appointments must be a Bundle of Appointments")
    if len(appointments.get("entry", [])) > max_appointments:
        raise BadRequest(IssueType.TOO_COSTLY, f"context.appointments holds {len(appointments['entry'])} entries; "
                                            f"at most {max_appointments} are accepted in one request")


def _check_encounter(context: dict[str, Any], _: int) -> None:
    if not isinstance(context.get("encounterId"), str):
        raise BadRequest(IssueType.INVALID, "context.encounterId must be a FHIR id")


def _check_draft_orders(context: dict[str, Any], _: int) -> None:
    draft = context.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise BadRequest(IssueType.INVALID, "context.draftOrders must be a Bundle")
    if "entry" in draft and not isinstance(draft["entry"], list):
        raise BadRequest(IssueType.INVALID, "context.draftOrders.entry must be an array")


def _check_selections(context: dict[str, Any], _: int) -> None:
    selections = context.get("selections")
    if not isinstance(selections, list) or not all(isinstance(x, str) and len(x) <= 200 for x in selections):
        raise BadRequest(IssueType.INVALID, "context.selections must be an array of references")


#: What each hook's context must hold beyond the ids every hook carries, checked in this order.
_HOOK_CHECKS: dict[Hook, tuple[Callable[[dict[str, Any], int], None], ...]] = {
    Hook.APPOINTMENT_BOOK: (_check_appointments,),
    Hook.ENCOUNTER_DISCHARGE: (_check_encounter,),
    Hook.ORDER_SELECT: (_check_draft_orders, _check_selections),
    Hook.ORDER_SIGN: (_check_draft_orders,),
}


def _check_context(req: CdsRequest, service: ServiceDefinition, max_appointments: int) -> None:
    if req.hook != service.hook:
        raise BadRequest(IssueType.INVALID, f"service {service.id} answers hook {service.hook}, not {req.hook}")
    context = req.context
    missing = [f for f in _REQUIRED_CONTEXT[service.hook] if f not in context]
    if missing:
        raise BadRequest(IssueType.REQUIRED, f"context is missing {', '.join(missing)}")
    _check_ids(context)
    for check in _HOOK_CHECKS.get(service.hook, ()):
        check(context, max_appointments)


def _text_field(value: Any, key: str) -> str | None:
    found = value.get(key) if isinstance(value, dict) else None
    return found[:500] if isinstance(found, str) and found else None


#: The audit event of a refused call, by error (any other is a bad request).
_ERROR_EVENTS: dict[type[CdsError], AuditEvent] = {Unauthorized: AuditEvent.AUTH_REJECTED,
                                                   UnknownCard: AuditEvent.FEEDBACK_REFUSED}


async def handle_cds_error(request: Request, exc: Exception) -> Response:
    """The one translation of the error tree (``errors.py``) into responses, with its audit line."""
    assert isinstance(exc, CdsError)
    event = _ERROR_EVENTS.get(type(exc), AuditEvent.BAD_REQUEST)
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
            raise Unauthorized(exc.refusal, exc.reason) from exc
        _check_content_type(request)
        raw = _json_body(await _read_body(request, options.max_body_bytes))
        try:
            body = model.model_validate(raw)
        except ValidationError as exc:
            raise BadRequest(IssueType.INVALID, _validation_message(exc)) from exc
        if isinstance(body, CdsRequest):
            _check_context(body, SERVICES[service_id], options.max_session_appointments)
            if body.fhirServer is not None:
                try:
                    await options.fhir_servers.check(body.fhirServer, caller.issuer if caller else None)
                except FhirServerRefused as exc:
                    raise BadRequest(IssueType.FORBIDDEN, exc.reason) from exc
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
                raise Unauthorized(exc.refusal, exc.reason) from exc
        return {"services": [s.discovery(options.policy) for s in SERVICES.values()]}

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
                outcome=item.outcome.value,
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
        audit(AuditEvent.FEEDBACK, service=service_id, items=len(records), issuer=caller.issuer if caller else None,
              outcomes=[r.outcome for r in records])
        return JSONResponse({}, status_code=200)

    return router


_ANSWERS = {Hook.ORDER_SELECT: answer_order, Hook.ORDER_SIGN: answer_order, Hook.PATIENT_VIEW: answer_order,
            Hook.APPOINTMENT_BOOK: answer_session, Hook.ENCOUNTER_DISCHARGE: answer_session}


async def _answer(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
                  caller: VerifiedCaller | None, started: float) -> Response:
    """Dispatch to the service's answer, with the call's audit fields."""
    return await _ANSWERS[service.hook](options, service, req, caller, started, call_log(options, service, req, caller))

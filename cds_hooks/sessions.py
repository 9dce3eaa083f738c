"""The session services: ``ketamine-session-book`` (appointment-book) and ``ketamine-session-discharge``
(encounter-discharge). The same intake, JWT, feedback (``router.py``) and answering steps (412, prefetch, audit:
``answering.py``) as the order services; their own searches, rules (``eligibility.sessions``) and cards
(``session_cards.py``). A peer of ``orders.py``: neither imports the other."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response

from eligibility import Verdict, assess_booking, assess_discharge, assess_pool, left_out_finding
from fhir_mapping import (
    SEARCHES,
    BloodPressureFact,
    DataDomain,
    FhirClient,
    GapReason,
    OnFailure,
    Query,
    ResourcePool,
    ResourceType,
    SessionAppointment,
    SessionRecords,
    add_json,
)

from .answering import audited_gaps, client_settings, fetch_data, no_cards, require_patient, send_cards
from .cards import CardContext, order_cards
from .models import FHIR_ID, Card, CdsRequest, Hook
from .prefetch import PatientData
from .session_cards import BLIND_REASONS, blind_card, session_cards

if TYPE_CHECKING:
    from .auth import VerifiedCaller
    from .definitions import CdsOptions, ServiceDefinition


def _unknown(pool: ResourcePool) -> frozenset[DataDomain]:
    return frozenset(d for g in pool.gaps for d in g.domains)


def _booked(req: CdsRequest) -> list[dict[str, Any]]:
    """The resources of the appointments Bundle being booked (the Appointments, and any orders sent with them)."""
    entries = req.context["appointments"].get("entry") or []
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def _booking_pool(req: CdsRequest) -> ResourcePool:
    """The request's appointments Bundle as a pool of its own: validated and resolved like fetched data, but kept
    apart, so that an appointment being booked never replaces the stored one of the same id (or the reverse)."""
    pool = ResourcePool()
    for resource in _booked(req):
        add_json(pool, resource, "context.appointments")
    return pool


def _appointments(records: SessionRecords, booking: ResourcePool, codes: frozenset[str]) -> list[SessionAppointment]:
    """The appointments being booked that are the patient's ketamine/esketamine sessions (their basedOn orders
    resolve in the request's Bundle, then in the fetched data; another patient's are left out and counted)."""
    found = []
    for resource in booking.of_type(ResourceType.APPOINTMENT):
        appt = records.appointment(resource, codes, booking)
        if appt is not None and appt.is_session:
            found.append(appt)
    return found


_ORDER_TYPES = {"ServiceRequest": ResourceType.SERVICE_REQUEST, "MedicationRequest": ResourceType.MEDICATION_REQUEST}


async def _read_based_on(options: CdsOptions, req: CdsRequest, pool: ResourcePool, booking: ResourcePool) -> None:
    """Read the orders appointments are based on that neither the request nor the prefetch carried (one read each,
    at most 10); one that cannot be read leaves its appointment unrecognised, which the audit line's gaps show."""
    wanted = []
    for resource in booking.of_type(ResourceType.APPOINTMENT):
        for ref in resource.get("basedOn") or []:
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.count("/") == 1 and pool.resolve(target) is None \
                    and booking.resolve(target) is None:
                rtype, rid = target.split("/")
                if rtype in _ORDER_TYPES and FHIR_ID.match(rid):
                    wanted.append(Query(_ORDER_TYPES[rtype], target, (), "basedOn",
                                        frozenset({DataDomain.APPOINTMENTS})))
    if not wanted or not req.fhirServer:
        return
    token = req.fhirAuthorization.access_token if req.fhirAuthorization else None
    client = FhirClient(req.fhirServer, token=token, http=options.http, settings=client_settings(options))
    await client.fetch(wanted[:10], resolve_medications=False, seed=pool)


_REQUIRED = frozenset(s.key for s in SEARCHES if s.on_failure is OnFailure.REQUIRED)


def _blind(data: PatientData) -> set[GapReason]:
    """Why the required data could not be fetched, when it could not and only because fetching failed (the server
    unreachable, slow, refusing): the session services then warn that their checks were not made. Data that is
    simply not there (not found, or neither sent nor fetchable) stays a 412."""
    if not data.missing_required():
        return set()
    reasons = {g.reason for g in data.pool.gaps if set(g.search.split("+")) & _REQUIRED}
    return reasons if reasons and reasons <= BLIND_REASONS.keys() else set()


async def answer_session(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
                         caller: VerifiedCaller | None, started: float, log: dict[str, Any]) -> Response:
    patient_id = str(req.context["patientId"])
    now = options.now()
    booking = _booking_pool(req) if service.hook is Hook.APPOINTMENT_BOOK else ResourcePool()
    if service.hook is Hook.APPOINTMENT_BOOK and not _may_be_sessions(booking, patient_id, options.session_codes):
        # Nothing to fetch for a booking that is not a session: answered at once, like a non-ketamine order.
        return no_cards(log, started)
    data = await fetch_data(options, req, patient_id, service.searches, now.date())
    blind = _blind(data)
    if blind:
        card = blind_card(service.hook, sorted(blind), options.policy.cite("session_monitoring_minutes"),
                          options.policy.thresholds)
        return await send_cards(options, service, req, caller, [card], log, started,
                                data_gaps=audited_gaps(data.pool.gaps), checks_not_made=True,
                                fetched=len(data.queries))
    gaps = require_patient(data, patient_id, log, started)
    encounter_id = req.context.get("encounterId") if service.hook is Hook.ENCOUNTER_DISCHARGE else None
    records = SessionRecords(data.pool, patient_id, encounter_id if isinstance(encounter_id, str) else None)
    answer = _SessionAnswer(options, req, now, data, records, booking, _unknown(data.pool))
    cards, verdict = await _ANSWERS[service.hook](answer)
    left_out = records.left_out
    return await send_cards(options, service, req, caller, cards, log, started, verdict=verdict, data_gaps=gaps,
                            fetched=len(data.queries), left_out={"other_patient": left_out.other_patient,
                                                                 "other_encounter": left_out.other_encounter,
                                                                 "invalid": left_out.invalid})


def _may_be_sessions(booking: ResourcePool, patient_id: str, codes: frozenset[str]) -> bool:
    """Whether a booking may hold the patient's sessions: one recognised, one of another patient's (it goes on, to
    be reported), or one based on an order still to be read."""
    probe = SessionRecords(ResourcePool(), patient_id)
    return bool(_appointments(probe, booking, codes) or probe.left_out.other_patient or any(
        r.get("basedOn") for r in booking.of_type(ResourceType.APPOINTMENT)))


@dataclass(frozen=True, slots=True)
class _SessionAnswer:
    """What a session service's answer reads: the request, the fetched data, the session records in it."""

    options: CdsOptions
    req: CdsRequest
    #: The request's time: every rule of the answer reads the same "now".
    now: dt.datetime
    data: PatientData
    records: SessionRecords
    booking: ResourcePool
    unknown: frozenset[DataDomain]


async def _booking_cards(answer: _SessionAnswer) -> tuple[list[Card], str | None]:
    options, req, records, now = answer.options, answer.req, answer.records, answer.now
    patient_id = str(req.context["patientId"])
    await _read_based_on(options, req, answer.data.pool, answer.booking)
    appointments = _appointments(records, answer.booking, options.session_codes)
    cards: list[Card] = []
    verdict: str | None = None
    if appointments:
        assessment, facts = assess_pool(answer.data.pool, options.policy, now.date(), patient_id)
        verdict = assessment.verdict.value
        ctx = CardContext(hook_instance=req.hookInstance, patient_id=patient_id,
                          user_id=req.context.get("userId"), encounter_id=req.context.get("encounterId"),
                          orders=(), smart_launch_url=options.smart_launch_url)
        # The current assessment, as at order time, unless it is "criteria met" (then the session cards say
        # what matters for the session).
        cards = [] if assessment.verdict is Verdict.CANDIDATE else [
            c for c in order_cards(assessment, options.policy, ctx)]
        others = records.booked_sessions(options.session_codes, exclude=[a.id for a in appointments])
        pressures: list[BloodPressureFact] = list(facts.blood_pressures)
        for appt in appointments:
            product = "Esketamine" if appt.esketamine else "Ketamine"
            cards += session_cards(assess_booking(appt, others, pressures, options.policy, now, answer.unknown,
                                                  assessment.course), product,
                                   options.policy.thresholds, options.display_tz)
        # The records the session rules read (sessions, blood pressures, doses of the course); the rest of the
        # order-time data is the assessment's, which keeps the patient's own as at order time.
        records.count_other_patients((ResourceType.APPOINTMENT, ResourceType.OBSERVATION,
                                      ResourceType.MEDICATION_ADMINISTRATION))
    # Said even when nothing was recognised: a booking left out (another patient's) is not a silent booking.
    quality = left_out_finding(records.left_out, options.policy)
    if quality is not None:
        cards += session_cards([quality], "Ketamine", options.policy.thresholds, options.display_tz)
    return cards, verdict


async def _discharge_cards(answer: _SessionAnswer) -> tuple[list[Card], str | None]:
    options, records = answer.options, answer.records
    unknown = answer.unknown
    if records.unidentified_administrations():
        unknown |= {DataDomain.ADMINISTRATIONS}  # a dose whose drug cannot be read might be ketamine
    administrations = records.ketamine_administrations()
    encounter = records.encounter()
    pressures_at = records.timed_blood_pressures()
    records.count_other_patients()
    discharge = assess_discharge(administrations, pressures_at, encounter, options.policy, answer.now, unknown,
                                 records.left_out)
    product = "Esketamine" if discharge.last_dose is None or discharge.last_dose.esketamine else "Ketamine"
    return session_cards(discharge.findings, product, options.policy.thresholds, options.display_tz), None


#: Each session service's cards (and the verdict of the assessment they rest on, when one was made).
_ANSWERS: dict[Hook, Callable[[_SessionAnswer], Awaitable[tuple[list[Card], str | None]]]] = {
    Hook.APPOINTMENT_BOOK: _booking_cards,
    Hook.ENCOUNTER_DISCHARGE: _discharge_cards,
}

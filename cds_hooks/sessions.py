"""The session services: ``ketamine-session-book`` (appointment-book) and ``ketamine-session-discharge``
(encounter-discharge). Same intake, JWT, 412, prefetch, feedback and audit as the order services (``service.py``);
their own searches, rules (``eligibility.sessions``) and cards (``session_cards.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.responses import Response

from eligibility import Verdict, assess_booking, assess_discharge, assess_pool
from fhir_mapping import (
    BloodPressureFact,
    DataDomain,
    FhirClient,
    Query,
    ResourcePool,
    ResourceType,
    SessionAppointment,
    booked_sessions,
    encounter_fact,
    ketamine_administrations,
    session_appointment,
    timed_blood_pressures,
    unidentified_administrations,
)

from .answering import client_settings, fetch_data, no_cards, require_patient, send_cards
from .cards import CardContext, order_cards
from .models import FHIR_ID, Card, CdsRequest, Hook
from .session_cards import session_cards

if TYPE_CHECKING:
    from .auth import VerifiedCaller
    from .service import CdsOptions, ServiceDefinition


def _unknown(pool: ResourcePool) -> frozenset[DataDomain]:
    return frozenset(d for g in pool.gaps for d in g.domains)


def _booked(req: CdsRequest) -> list[dict[str, Any]]:
    """The resources of the appointments Bundle being booked (the Appointments, and any orders sent with them)."""
    entries = req.context["appointments"].get("entry") or []
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def _appointments(req: CdsRequest, pool: ResourcePool, codes: frozenset[str]) -> list[SessionAppointment]:
    """The appointments being booked that are ketamine/esketamine sessions (contained or fetched basedOn orders
    are resolved through the pool)."""
    found = []
    for resource in _booked(req):
        if resource.get("resourceType") != "Appointment":
            continue
        appt = session_appointment(resource, codes, lambda ref, container: pool.resolve(ref, container))
        if appt.is_session:
            found.append(appt)
    return found


def _with_based_on(req: CdsRequest, pool: ResourcePool) -> None:
    """Orders an appointment is based on, when the request carries them in its appointments Bundle (EHRs send the
    order with the appointment) — added so that ``basedOn`` resolves."""
    for resource in _booked(req):
        if resource.get("resourceType") in ("ServiceRequest", "MedicationRequest"):
            pool.add(resource, "context.appointments")


_ORDER_TYPES = {"ServiceRequest": ResourceType.SERVICE_REQUEST, "MedicationRequest": ResourceType.MEDICATION_REQUEST}


async def _read_based_on(options: CdsOptions, req: CdsRequest, pool: ResourcePool) -> None:
    """Read the orders appointments are based on that neither the request nor the prefetch carried (one read each,
    at most 10); one that cannot be read leaves its appointment unrecognised, which the audit line's gaps show."""
    wanted = []
    for resource in _booked(req):
        for ref in resource.get("basedOn") or []:
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.count("/") == 1 and pool.resolve(target) is None:
                rtype, rid = target.split("/")
                if rtype in _ORDER_TYPES and FHIR_ID.match(rid):
                    wanted.append(Query(_ORDER_TYPES[rtype], target, (), "basedOn",
                                        frozenset({DataDomain.APPOINTMENTS})))
    if not wanted or not req.fhirServer:
        return
    token = req.fhirAuthorization.access_token if req.fhirAuthorization else None
    client = FhirClient(req.fhirServer, token=token, http=options.http, settings=client_settings(options))
    await client.fetch(wanted[:10], resolve_medications=False, seed=pool)


async def answer_session(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
                         caller: VerifiedCaller | None, started: float, log: dict[str, Any]) -> Response:
    patient_id = str(req.context["patientId"])
    now = options.now()
    if service.hook is Hook.APPOINTMENT_BOOK:
        # Nothing to fetch for a booking that is not a session: answered at once, like a non-ketamine order.
        probe = ResourcePool()
        _with_based_on(req, probe)
        if not _appointments(req, probe, options.session_codes) and not any(r.get("basedOn") for r in _booked(req)):
            return no_cards(log, started)
    data = await fetch_data(options, req, patient_id, service.searches, now.date())
    gaps = require_patient(data, patient_id, log, started)
    unknown = _unknown(data.pool)
    cards: list[Card]
    verdict: str | None = None
    if service.hook is Hook.APPOINTMENT_BOOK:
        _with_based_on(req, data.pool)
        await _read_based_on(options, req, data.pool)
        booking = _appointments(req, data.pool, options.session_codes)
        if not booking:
            cards = []
        else:
            assessment, facts = assess_pool(data.pool, options.policy, now.date(), patient_id)
            verdict = assessment.verdict.value
            ctx = CardContext(hook_instance=req.hookInstance, patient_id=patient_id,
                              user_id=req.context.get("userId"), encounter_id=req.context.get("encounterId"),
                              orders=(), smart_launch_url=options.smart_launch_url)
            # The current assessment, as at order time, unless it is "criteria met" (then the session cards say
            # what matters for the session).
            cards = [] if assessment.verdict is Verdict.CANDIDATE else [
                c for c in order_cards(assessment, options.policy, ctx)]
            others = booked_sessions(data.pool, options.session_codes, exclude=[a.id for a in booking])
            pressures: list[BloodPressureFact] = list(facts.blood_pressures)
            for appt in booking:
                product = "Esketamine" if appt.esketamine else "Ketamine"
                cards += session_cards(assess_booking(appt, others, pressures, options.policy, now, unknown,
                                                      assessment.course), product, options.display_tz)
    else:
        if unidentified_administrations(data.pool):
            unknown |= {DataDomain.ADMINISTRATIONS}  # a dose whose drug cannot be read might be ketamine
        administrations = ketamine_administrations(data.pool)
        encounter = encounter_fact(data.pool, str(req.context["encounterId"]))
        discharge = assess_discharge(administrations, timed_blood_pressures(data.pool), encounter, options.policy,
                                     now, unknown)
        product = "Esketamine" if discharge.last_dose is None or discharge.last_dose.esketamine else "Ketamine"
        cards = session_cards(discharge.findings, product, options.display_tz)
    return await send_cards(options, service, req, caller, cards, log, started, verdict=verdict, data_gaps=gaps,
                            fetched=len(data.queries))


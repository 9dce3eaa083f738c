"""What every CDS service shares, below the services that use them: the options of the running service
(``CdsOptions``), what a service is (``ServiceDefinition``) and the five services this package offers (``SERVICES``,
the discovery document and the router's catalogue). Nothing here answers a call: ``answering.py`` holds the steps
every answer shares, ``orders.py`` and ``sessions.py`` the answers, ``router.py`` the HTTP routes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from eligibility import Policy
from fhir_mapping import BOOKING_SEARCHES, DISCHARGE_SEARCHES, SEARCHES, Search
from storage import Storage

from .auth import JwtVerifier
from .fhir_servers import FhirServerCheck
from .models import Hook
from .policy_words import duration


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    id: str
    hook: Hook
    title: str
    #: ``{monitoring}`` stands for the policy's monitoring time after a dose.
    description: str
    usage_requirements: str
    searches: tuple[Search, ...] = SEARCHES

    def prefetch(self) -> dict[str, str]:
        return {s.key: s.template() for s in self.searches}

    def discovery(self, policy: Policy) -> dict[str, Any]:
        """The service in the discovery document; its description says the policy's monitoring time."""
        monitoring = duration(policy.thresholds.session_monitoring_minutes)
        return {"hook": self.hook, "id": self.id, "title": self.title,
                "description": self.description.format(monitoring=monitoring),
                "usageRequirements": self.usage_requirements, "prefetch": self.prefetch()}


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
                      "not 'criteria met', a slot too short for the dose and {monitoring} of monitoring, more sessions "
                      "than the dosing schedule allows, an elevated recent blood pressure, transport home.",
                      _USAGE + " Also Appointment (the patient's other sessions).", BOOKING_SEARCHES),
    ServiceDefinition("ketamine-session-discharge", Hook.ENCOUNTER_DISCHARGE, "Esketamine/ketamine session discharge",
                      "When a patient is discharged from an encounter in which ketamine or esketamine was given: "
                      "{monitoring} of monitoring after the last dose, blood pressure after the dose, the REMS "
                      "monitoring form and no driving for outpatients. Silent when no dose was given.",
                      "Grant read access to Patient, Encounter, MedicationAdministration and Observation for the "
                      "patient. Without Patient the service answers 412.", DISCHARGE_SEARCHES),
)}


@dataclass(slots=True)
class CdsOptions:
    """The options of the running service. No defaults of its own: the settings are the one source of every value
    (``ketamine_cds.app.cds_options`` builds them from the settings, tests included)."""

    public_base_url: str
    policy: Policy
    storage: Storage
    verifier: JwtVerifier | None
    discovery_requires_auth: bool
    max_body_bytes: int
    fhir_budget_s: float
    smart_launch_url: str | None
    audit_salt: str
    fhir_max_response_bytes: int
    fhir_max_total_bytes: int
    http: httpx.AsyncClient | None
    today: Callable[[], dt.date]
    #: order-sign leaves out a non-critical card that order-select showed, unchanged, this recently.
    repeat_window_s: float
    #: "Now" for the session rules: the request time (tests pass a clock).
    now: Callable[[], dt.datetime]
    #: ``system|code`` of appointment types that are ketamine/esketamine treatment sessions ([sessions] settings).
    session_codes: frozenset[str]
    #: The time zone of the times written on session cards (None: the offset each time was recorded with).
    display_tz: dt.tzinfo | None
    #: At most this many entries in an appointment-book request's ``context.appointments`` (over it: 400). Each
    #: appointment is validated and read, and each can give several cards: unbounded, one request stalled a replica.
    max_session_appointments: int
    #: At most this many cards in one answer (over it: the most urgent, and one card saying what was left out).
    max_cards: int
    #: Which ``fhirServer`` each client may send (origins, and the non-public networks it may resolve to).
    fhir_servers: FhirServerCheck

    def endpoint(self, path: str) -> str:
        return self.public_base_url.rstrip("/") + path

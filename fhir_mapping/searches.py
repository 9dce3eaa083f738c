"""The one table of FHIR searches the rules need.

Every face derives from it: the CDS Hooks prefetch templates, the fallback searches of the CDS service, the SMART
app's reads, ``evaluate --fhir-server`` and the tests. Each search names the *data domains* a failure leaves
unknown, so that a rule can tell whether its own data is complete: a failed PHQ-9 search makes severity unknown but
says nothing about blood pressure, although both are Observations.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from .codesets import CodeSets
from .facts import DataDomain, ResourceType

PATIENT_TOKEN = "{{context.patientId}}"  # noqa: S105 - the CDS Hooks prefetch token, not a secret
ENCOUNTER_TOKEN = "{{context.encounterId}}"  # noqa: S105
#: The CDS Hooks "Simpler FHIRPath" date token (3.0 ballot); a client that cannot resolve it leaves the key out and
#: the service runs the search itself with the date computed (``Search.query(today=…)``).
_TODAY_MINUS = re.compile(r"\{\{today\(\) - (\d+) days\}\}")

# Every status, so that stopped and completed courses (the trial history) come back: Epic returns only active
# medications unless others are asked for (shared/reference/README.md, "EHR quirks").
_MED_STATEMENT_STATUSES = "active,completed,entered-in-error,intended,stopped,on-hold,unknown,not-taken"
_MED_REQUEST_STATUSES = "active,on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown"
# A dose counts only when it was given (administration) or handed over (dispense).
_GIVEN_STATUSES = "completed,in-progress"

# Observation searches need a code on many EHRs: each search asks for the codes of its groups in
# data/observation_codes.toml (the codes the mapping reads, clinical.md §5), so search and mapping never drift.
OBSERVATION_GROUPS: dict[str, tuple[str, ...]] = {
    # Items 1-8 too: a PHQ-9 sent as its nine items without a total is summed (issue #20).
    "phq9": ("phq9_total", "phq9_item9", "phq9_panel", "phq9_item"),
    "gad7": ("gad7_total",),
    "bloodPressure": ("bp_panel", "systolic", "diastolic"),
    # With the substance-use status (US Core, SNOMED CT 228366006) and social-history Observations coded for
    # alcohol misuse: current misuse is read from them (issue #20).
    "drugScreens": ("drug_screen_cocaine", "drug_screen_amphetamines", "drug_screen_pcp", "drug_screen_ketamine",
                    "substance_use_status", "alcohol_misuse_status"),
    "pregnancyTests": ("pregnancy_test", "pregnancy_status"),
}


class OnFailure(StrEnum):
    """What a search that cannot be completed means for the assessment."""

    #: The patient cannot be assessed at all: the CDS service answers 412, the app shows an error.
    REQUIRED = "required"
    #: Its data domains are unknown.
    UNKNOWN = "unknown"
    #: A supplementary source: a server that does not support the search (4xx) is noted, not a gap; any other
    #: failure makes its domains unknown.
    SUPPLEMENTARY = "supplementary"


@dataclass(frozen=True, slots=True)
class Search:
    """One search: its prefetch key, resource type, path and parameters (with the patient token), the data
    domains its failure leaves unknown, and what else a failure means."""

    key: str
    resource_type: ResourceType
    path: str
    params: tuple[tuple[str, str], ...]
    domains: frozenset[DataDomain]
    on_failure: OnFailure = OnFailure.UNKNOWN

    def template(self) -> str:
        """The CDS Hooks prefetch template (FHIR search syntax with the ``{{context.patientId}}`` token)."""
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.path}?{query}" if query else self.path

    def query(self, patient_id: str, page_size: int | None = None, *, encounter_id: str | None = None,
              today: dt.date | None = None) -> Query:
        """The search for one patient (and encounter), ready for the client (``_count`` added to searches)."""
        def fill(value: str) -> str:
            value = value.replace(PATIENT_TOKEN, patient_id).replace(ENCOUNTER_TOKEN, encounter_id or "")
            return _TODAY_MINUS.sub(lambda m: ((today or dt.date.today()) - dt.timedelta(days=int(m.group(1))))
                                    .isoformat(), value)
        params = tuple((k, fill(v)) for k, v in self.params)
        if page_size is not None and self.is_search:
            params = (*params, ("_count", str(page_size)))
        path = self.path.replace(PATIENT_TOKEN, _path_segment(patient_id))
        path = path.replace(ENCOUNTER_TOKEN, _path_segment(encounter_id or ""))
        return Query(self.resource_type, path, params, self.key, self.domains, self.on_failure)

    def next_page(self, url: str) -> Query:
        """The rest of this search, from a next link the client sent (a paged prefetch)."""
        return Query(self.resource_type, url, (), self.key, self.domains, self.on_failure)

    @property
    def is_search(self) -> bool:
        return "/" not in self.path


@dataclass(frozen=True, slots=True)
class Query:
    """One request the client runs: a search for one patient, a next link, or a read by id."""

    resource_type: ResourceType
    path: str
    params: tuple[tuple[str, str], ...] = ()
    key: str = ""
    domains: frozenset[DataDomain] = frozenset()
    on_failure: OnFailure = OnFailure.UNKNOWN


def _path_segment(value: str) -> str:
    # An id is one path segment: a patient id of "../admin" must never reach another path on the server.
    return quote(value, safe="")


def _codes(key: str) -> str:
    return ",".join(f"{system}|{code}" for system, code in CodeSets.load().observation_codes(*OBSERVATION_GROUPS[key]))


_P = ("patient", PATIENT_TOKEN)
_D = DataDomain
SEARCHES: tuple[Search, ...] = (
    Search("patient", ResourceType.PATIENT, f"Patient/{PATIENT_TOKEN}", (), frozenset({_D.PATIENT}),
           OnFailure.REQUIRED),
    Search("conditions", ResourceType.CONDITION, "Condition", (_P,), frozenset({_D.CONDITIONS}), OnFailure.REQUIRED),
    Search("medicationStatements", ResourceType.MEDICATION_STATEMENT, "MedicationStatement",
           (_P, ("status", _MED_STATEMENT_STATUSES), ("_include", "MedicationStatement:medication")),
           frozenset({_D.MEDICATIONS})),
    Search("medicationRequests", ResourceType.MEDICATION_REQUEST, "MedicationRequest",
           (_P, ("status", _MED_REQUEST_STATUSES), ("_include", "MedicationRequest:medication")),
           frozenset({_D.MEDICATIONS})),
    Search("phq9", ResourceType.OBSERVATION, "Observation", (_P, ("code", _codes("phq9"))), frozenset({_D.PHQ9})),
    Search("phq9Responses", ResourceType.QUESTIONNAIRE_RESPONSE, "QuestionnaireResponse",
           (_P, ("status", "completed,amended")), frozenset({_D.PHQ9}), OnFailure.SUPPLEMENTARY),
    Search("gad7", ResourceType.OBSERVATION, "Observation", (_P, ("code", _codes("gad7"))), frozenset({_D.GAD7})),
    Search("bloodPressure", ResourceType.OBSERVATION, "Observation", (_P, ("code", _codes("bloodPressure"))),
           frozenset({_D.BLOOD_PRESSURE})),
    Search("drugScreens", ResourceType.OBSERVATION, "Observation", (_P, ("code", _codes("drugScreens"))),
           frozenset({_D.DRUG_SCREENS})),
    Search("pregnancyTests", ResourceType.OBSERVATION, "Observation", (_P, ("code", _codes("pregnancyTests"))),
           frozenset({_D.PREGNANCY})),
    Search("allergies", ResourceType.ALLERGY_INTOLERANCE, "AllergyIntolerance", (_P,), frozenset({_D.ALLERGIES})),
    # The ketamine/esketamine course: doses given and dispensed (issue #23). Every drug, not a code filter: a dose
    # whose drug sits in a referenced Medication would escape one, and the course would look shorter than it is.
    Search("medicationAdministrations", ResourceType.MEDICATION_ADMINISTRATION, "MedicationAdministration",
           (_P, ("status", _GIVEN_STATUSES), ("_include", "MedicationAdministration:medication")),
           frozenset({_D.TREATMENT_COURSE})),
    Search("medicationDispenses", ResourceType.MEDICATION_DISPENSE, "MedicationDispense",
           (_P, ("status", _GIVEN_STATUSES), ("_include", "MedicationDispense:medication")),
           frozenset({_D.TREATMENT_COURSE})),
)
SEARCHES_BY_KEY = {s.key: s for s in SEARCHES}

#: How far back the booking service reads a patient's appointments (enough to see when induction began).
APPOINTMENT_HISTORY_DAYS = 56
#: The session services' own searches (their prefetch templates are listed in discovery with the service).
APPOINTMENTS = Search(
    "appointments", ResourceType.APPOINTMENT, "Appointment",
    (_P, ("date", f"ge{{{{today() - {APPOINTMENT_HISTORY_DAYS} days}}}}"),
     ("status", "proposed,pending,booked,arrived,fulfilled,checked-in")), frozenset({_D.APPOINTMENTS}))
ENCOUNTER = Search("encounter", ResourceType.ENCOUNTER, f"Encounter/{ENCOUNTER_TOKEN}", (),
                   frozenset({_D.ENCOUNTER}))
ADMINISTRATIONS = Search(
    "administrations", ResourceType.MEDICATION_ADMINISTRATION, "MedicationAdministration",
    (_P, ("context", f"Encounter/{ENCOUNTER_TOKEN}"), ("_include", "MedicationAdministration:medication")),
    frozenset({_D.ADMINISTRATIONS}))
#: The patient's doses of the last day, in any encounter: a dose charted in another encounter (a clinic visit before
#: the session's) still starts the 2-hour clock (issue #21); the rules keep those within the monitoring window.
RECENT_ADMINISTRATIONS = Search(
    "recentAdministrations", ResourceType.MEDICATION_ADMINISTRATION, "MedicationAdministration",
    (_P, ("effective-time", "ge{{today() - 1 days}}"), ("_include", "MedicationAdministration:medication")),
    frozenset({_D.ADMINISTRATIONS}))
ENCOUNTER_BLOOD_PRESSURES = Search(
    "encounterBloodPressures", ResourceType.OBSERVATION, "Observation",
    (_P, ("encounter", f"Encounter/{ENCOUNTER_TOKEN}"), ("code", _codes("bloodPressure"))),
    frozenset({_D.SESSION_BLOOD_PRESSURE}))
#: appointment-book: the order-time searches (the same assessment) plus the patient's appointments.
BOOKING_SEARCHES: tuple[Search, ...] = (*SEARCHES, APPOINTMENTS)
#: encounter-discharge: the patient, the encounter, what was given in it (and to the patient in the last day) and
#: the blood pressures taken in it.
DISCHARGE_SEARCHES: tuple[Search, ...] = (SEARCHES_BY_KEY["patient"], ENCOUNTER, ADMINISTRATIONS,
                                          RECENT_ADMINISTRATIONS, ENCOUNTER_BLOOD_PRESSURES)
#: The resource types the searches read (Medication comes with them, by _include or a read).
SEARCHED_TYPES = tuple(dict.fromkeys(s.resource_type for s in SEARCHES))


def domains_of(*types: ResourceType) -> frozenset[DataDomain]:
    """The data domains that rest on these resource types (for a gap known only by type, e.g. a scope not granted)."""
    found = {d for s in SEARCHES if s.resource_type in types for d in s.domains}
    if ResourceType.MEDICATION in types:
        found |= {DataDomain.MEDICATIONS, DataDomain.TREATMENT_COURSE}
    return frozenset(found)


def patient_queries(
    patient_id: str, types: frozenset[ResourceType] | set[ResourceType] | None = None, page_size: int = 200
) -> list[Query]:
    """The searches for one patient, limited to ``types`` (e.g. what the granted scopes allow)."""
    return [s.query(patient_id, page_size) for s in SEARCHES if types is None or s.resource_type in types]

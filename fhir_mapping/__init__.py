"""FHIR R4 JSON → typed clinical facts: input loading, code sets, dose parsing, the FHIR client.

Importing the package loads no HTTP or pydantic module: the pure rules (``eligibility``) import it for its facts
only. The FHIR client (httpx) is loaded on first use of one of its names (``fhir_mapping.FhirClient``), and the
FHIR models (pydantic) when an entry is first validated.
"""

from typing import TYPE_CHECKING, Any

from .codesets import CodeSets
from .facts import (
    COMPUTED_FROM_ITEMS,
    FROM_INVALID_ENTRY,
    AllergyFact,
    AllergyStatus,
    BloodPressureFact,
    ClinicalFacts,
    ClinicalStatus,
    ConditionFact,
    Course,
    CurrentMedication,
    DataDomain,
    DataGap,
    DoseSegment,
    DoseSource,
    DrugClass,
    ExposureKind,
    FreeTextProblem,
    GapReason,
    Gender,
    KetamineExposure,
    KetamineProduct,
    LabResultFact,
    MatchMethod,
    MedicationCategory,
    NonAdherence,
    ObservationGroup,
    ObservationKind,
    PatientFact,
    ResourceType,
    ScoreFact,
    SkippedEntry,
)
from .loading import (
    InputError,
    ResourcePool,
    SearchScope,
    add_json,
    clear_validation_cache,
    read_path,
    unresolved_medication_references,
)
from .mapping import patient_key, patients_in, to_facts
from .orders import KetamineOrder, ketamine_concept, ketamine_order
from .searches import (
    BOOKING_SEARCHES,
    DISCHARGE_SEARCHES,
    PATIENT_TOKEN,
    SEARCHED_TYPES,
    SEARCHES,
    SEARCHES_BY_KEY,
    OnFailure,
    Query,
    Search,
    domains_of,
    patient_queries,
)
from .sessions import (
    Administration,
    EncounterFact,
    LeftOut,
    LeftOutReason,
    SessionAppointment,
    SessionRecords,
    TimedBloodPressure,
    parse_instant,
    session_appointment,
)

if TYPE_CHECKING:  # the type checker sees the client's names as they are; the interpreter loads them on demand
    from .client import ClientSettings, FetchResult, FhirClient, QueryReport

#: The names served by ``client.py``, whose import costs httpx (issue 22 item 5: the core is pure on import).
_CLIENT_NAMES = frozenset({"ClientSettings", "FetchResult", "FhirClient", "QueryReport"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        value = getattr(client, name)
        globals()[name] = value  # later look-ups find it without coming here again
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BOOKING_SEARCHES",
    "COMPUTED_FROM_ITEMS",
    "DISCHARGE_SEARCHES",
    "FROM_INVALID_ENTRY",
    "PATIENT_TOKEN",
    "SEARCHED_TYPES",
    "SEARCHES",
    "SEARCHES_BY_KEY",
    "Administration",
    "AllergyFact",
    "AllergyStatus",
    "BloodPressureFact",
    "ClientSettings",
    "ClinicalFacts",
    "ClinicalStatus",
    "CodeSets",
    "ConditionFact",
    "Course",
    "CurrentMedication",
    "DataDomain",
    "DataGap",
    "DoseSegment",
    "DoseSource",
    "DrugClass",
    "EncounterFact",
    "ExposureKind",
    "FetchResult",
    "FhirClient",
    "FreeTextProblem",
    "GapReason",
    "Gender",
    "InputError",
    "KetamineExposure",
    "KetamineOrder",
    "KetamineProduct",
    "LabResultFact",
    "LeftOut",
    "LeftOutReason",
    "MatchMethod",
    "MedicationCategory",
    "NonAdherence",
    "ObservationGroup",
    "ObservationKind",
    "OnFailure",
    "PatientFact",
    "Query",
    "QueryReport",
    "ResourcePool",
    "ResourceType",
    "ScoreFact",
    "Search",
    "SearchScope",
    "SessionAppointment",
    "SessionRecords",
    "SkippedEntry",
    "TimedBloodPressure",
    "add_json",
    "clear_validation_cache",
    "domains_of",
    "ketamine_concept",
    "ketamine_order",
    "parse_instant",
    "patient_key",
    "patient_queries",
    "patients_in",
    "read_path",
    "session_appointment",
    "to_facts",
    "unresolved_medication_references",
]

"""Typed clinical facts: what the rules see of a patient's FHIR data.

Every fact keeps the id of the resource it came from (``evidence``) so that a verdict can always be traced back to
the chart. Dates are ``datetime.date``: the rules reason in days, and FHIR dates without a time are common.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class ResourceType(StrEnum):
    PATIENT = "Patient"
    CONDITION = "Condition"
    MEDICATION_STATEMENT = "MedicationStatement"
    MEDICATION_REQUEST = "MedicationRequest"
    MEDICATION = "Medication"
    OBSERVATION = "Observation"
    QUESTIONNAIRE_RESPONSE = "QuestionnaireResponse"
    ALLERGY_INTOLERANCE = "AllergyIntolerance"
    # Read by the session services (appointment-book, encounter-discharge) only.
    APPOINTMENT = "Appointment"
    ENCOUNTER = "Encounter"
    MEDICATION_ADMINISTRATION = "MedicationAdministration"
    SERVICE_REQUEST = "ServiceRequest"
    #: Read for the ketamine/esketamine course (with MedicationAdministration).
    MEDICATION_DISPENSE = "MedicationDispense"


class DataDomain(StrEnum):
    """What a rule reads, as the FHIR searches deliver it (``searches.SEARCHES``). A gap names the domains it leaves
    unknown, so that each rule knows whether its own data is complete."""

    PATIENT = "patient"
    CONDITIONS = "conditions"
    MEDICATIONS = "medications"
    PHQ9 = "phq9"
    GAD7 = "gad7"
    BLOOD_PRESSURE = "blood_pressure"
    DRUG_SCREENS = "drug_screens"
    PREGNANCY = "pregnancy"
    ALLERGIES = "allergies"
    #: Ketamine/esketamine doses given or dispensed: whether the patient is already in a course.
    TREATMENT_COURSE = "treatment_course"
    # The session services' own searches.
    APPOINTMENTS = "appointments"
    ENCOUNTER = "encounter"
    ADMINISTRATIONS = "administrations"
    SESSION_BLOOD_PRESSURE = "session_blood_pressure"


class GapReason(StrEnum):
    """Why a resource type could not be obtained. Any gap makes the rules say 'unknown', never 'absent'."""

    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SERVER_ERROR = "server_error"
    REJECTED = "rejected"
    NETWORK_ERROR = "network_error"
    MALFORMED = "malformed"
    BUDGET_EXCEEDED = "budget_exceeded"
    NOT_PROVIDED = "not_provided"
    NOT_AUTHORIZED_SCOPE = "not_authorized_scope"
    NOT_FOUND = "not_found"
    UNRESOLVED_REFERENCE = "unresolved_reference"
    TOO_LARGE = "too_large"
    #: The server answered, but its searchset says the results were suppressed, cut or not expressible (issue #20).
    INCOMPLETE = "incomplete"
    #: An entry failed validation and not even its code could be read (issue #20): its type is incomplete.
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class DataGap:
    """Data that could not be obtained, and the domains (``DataDomain``) it leaves unknown."""

    resource_type: ResourceType
    reason: GapReason
    detail: str = ""
    domains: frozenset[DataDomain] = frozenset()
    search: str = ""

    def describe(self) -> str:
        suffix = f": {self.detail}" if self.detail else ""
        if self.reason is GapReason.UNREADABLE:
            return f"{self.resource_type.value} incomplete{suffix}"
        what = f"{self.resource_type.value} ({self.search})" if self.search else self.resource_type.value
        return f"{what} could not be obtained ({self.reason.value}){suffix}"


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """An entry that was not valid FHIR R4 and was left out; reported, never fatal."""

    where: str
    resource_type: str
    reason: str


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PatientFact:
    id: str
    gender: Gender
    birth_date: dt.date | None
    name: str = ""

    def age_on(self, day: dt.date) -> int | None:
        if self.birth_date is None:
            return None
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


class ClinicalStatus(StrEnum):
    ACTIVE = "active"
    RECURRENCE = "recurrence"
    RELAPSE = "relapse"
    INACTIVE = "inactive"
    REMISSION = "remission"
    RESOLVED = "resolved"
    UNSPECIFIED = "unspecified"

    @property
    def is_active(self) -> bool:
        # A condition with no clinicalStatus is taken as active: problem lists often omit it.
        return self in (ClinicalStatus.ACTIVE, ClinicalStatus.RECURRENCE, ClinicalStatus.RELAPSE,
                        ClinicalStatus.UNSPECIFIED)


@dataclass(frozen=True, slots=True)
class ConditionFact:
    id: str
    concepts: frozenset[str]
    code: str
    system: str
    display: str
    clinical_status: ClinicalStatus
    verification_status: str
    onset: dt.date | None
    abatement: dt.date | None
    recorded: dt.date | None
    #: Why the finding needs a second look: "from an entry that failed validation" (issue #20), else empty.
    note: str = ""

    @property
    def reference(self) -> str:
        return f"Condition/{self.id}"


class ObservationKind(StrEnum):
    PHQ9_TOTAL = "phq9_total"
    PHQ9_ITEM9 = "phq9_item9"
    GAD7_TOTAL = "gad7_total"
    BLOOD_PRESSURE = "blood_pressure"
    DRUG_SCREEN = "drug_screen"
    PREGNANCY_TEST = "pregnancy_test"
    #: US Core pregnancy status (LOINC 82810-3): ``positive`` means the value says pregnant.
    PREGNANCY_STATUS = "pregnancy_status"
    #: A substance-use status (US Core, SNOMED CT 228366006): ``positive`` means it records current misuse.
    SUBSTANCE_USE_STATUS = "substance_use_status"


class ObservationGroup(StrEnum):
    """The groups of ``data/observation_codes.toml``: what an Observation's code says it records. The mapping reads
    each group with a reader of its own (``observations.py``)."""

    PHQ9_PANEL = "phq9_panel"
    PHQ9_ITEM = "phq9_item"
    PHQ9_ITEM9 = "phq9_item9"
    PHQ9_TOTAL = "phq9_total"
    GAD7_TOTAL = "gad7_total"
    BP_PANEL = "bp_panel"
    SYSTOLIC = "systolic"
    DIASTOLIC = "diastolic"
    PREGNANCY_STATUS = "pregnancy_status"
    SUBSTANCE_USE_STATUS = "substance_use_status"
    ALCOHOL_MISUSE_STATUS = "alcohol_misuse_status"
    PREGNANCY_TEST = "pregnancy_test"
    DRUG_SCREEN_COCAINE = "drug_screen_cocaine"
    DRUG_SCREEN_AMPHETAMINES = "drug_screen_amphetamines"
    DRUG_SCREEN_PCP = "drug_screen_pcp"
    DRUG_SCREEN_KETAMINE = "drug_screen_ketamine"


#: A score's note when no total was recorded and the items were summed (issue #20).
COMPUTED_FROM_ITEMS = "computed from the nine items"
#: The note of a finding read leniently from an entry that failed validation (issue #20).
FROM_INVALID_ENTRY = "from an entry that failed validation"


@dataclass(frozen=True, slots=True)
class ScoreFact:
    """A questionnaire score (PHQ-9 total or item 9, GAD-7)."""

    id: str
    kind: ObservationKind
    day: dt.date
    value: float
    resource_type: str = "Observation"
    #: ``COMPUTED_FROM_ITEMS`` or ``FROM_INVALID_ENTRY`` when the score is not simply as recorded, else empty.
    note: str = ""

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True, slots=True)
class BloodPressureFact:
    id: str
    day: dt.date
    systolic: float | None
    diastolic: float | None
    #: How many readings of that day this one stands for (the lowest systolic and diastolic of them).
    readings: int = 1
    #: ``FROM_INVALID_ENTRY`` when a value of it was read leniently (issue #20), else empty.
    note: str = ""

    @property
    def reference(self) -> str:
        return f"Observation/{self.id}"


@dataclass(frozen=True, slots=True)
class LabResultFact:
    """A qualitative result (drug screen, pregnancy test)."""

    id: str
    kind: ObservationKind
    analyte: str
    code: str
    day: dt.date
    positive: bool
    #: False for a quantitative result with no interpretation and no reference range: listed, never counted.
    interpretable: bool = True
    #: ``FROM_INVALID_ENTRY`` when read leniently (issue #20), else empty.
    note: str = ""

    @property
    def reference(self) -> str:
        return f"Observation/{self.id}"


@dataclass(frozen=True, slots=True)
class FreeTextProblem:
    """A Condition with no recognised coding whose text names a contraindication: the rule says "unknown, confirm"."""

    id: str
    text: str
    concept: str
    day: dt.date | None

    @property
    def reference(self) -> str:
        return f"Condition/{self.id}"


@dataclass(frozen=True, slots=True)
class AllergyFact:
    id: str
    substance: str
    clinical_status: AllergyStatus
    verification_status: str

    @property
    def reference(self) -> str:
        return f"AllergyIntolerance/{self.id}"


class DrugClass(StrEnum):
    """Antidepressant classes of ``data/antidepressants.csv`` (clinical.md §2a)."""

    SSRI = "SSRI"
    SNRI = "SNRI"
    TCA = "TCA"
    TECA = "TeCA"
    MAOI = "MAOI"
    NDRI = "NDRI"
    NASSA = "NaSSA"
    SARI = "SARI"
    SPARI = "SPARI"
    MULTIMODAL = "multimodal"


class MedicationCategory(StrEnum):
    """Medications that matter to the rules besides the antidepressant trials (ketamine itself is a
    :class:`KetamineExposure`)."""

    PSYCHOSTIMULANT = "psychostimulant"
    MAOI = "maoi"
    #: A benzodiazepine, Z-drug or opioid: more sedation with esketamine (US PI §7.1 [S1, S53]; issue #20).
    CNS_DEPRESSANT = "cns_depressant"


class AllergyStatus(StrEnum):
    """AllergyIntolerance.clinicalStatus (http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    RESOLVED = "resolved"

    @classmethod
    def of(cls, code: str) -> AllergyStatus:
        # No status, or one we do not know: active (safety first).
        try:
            return cls(code)
        except ValueError:
            return cls.ACTIVE


class MatchMethod(StrEnum):
    """How a medication's ingredient was recognised."""

    RXNORM_INGREDIENT = "rxnorm_ingredient"
    RXNORM_CLINICAL_DRUG = "rxnorm_clinical_drug"
    ATC_AND_NAME = "atc_and_name"
    NAME = "name"
    BRAND_NAME = "brand_name"


class DoseSource(StrEnum):
    STRUCTURED = "structured"
    STRUCTURED_UNITS_X_STRENGTH = "structured_units_x_strength"
    TEXT = "text"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class DoseSegment:
    """One record's exposure: a period at one daily dose. ``end`` None means ongoing (open-ended).

    ``length_known`` is False for a record that gives only a date (a MedicationStatement with only
    ``effectiveDateTime``, a MedicationRequest with only ``authoredOn`` and no supply): it shows the drug was
    prescribed or taken that day, not for how long. Its ``end`` is the last day a following record documents.
    """

    start: dt.date
    end: dt.date | None
    daily_mg: float | None
    dose_source: DoseSource
    evidence: str
    length_known: bool = True
    #: The record gives a dose but no frequency at all: read as once daily (most antidepressants are).
    frequency_assumed: bool = False


@dataclass(frozen=True, slots=True)
class Course:
    """Successive records of one ingredient merged into one course of treatment."""

    ingredient: str
    drug_class: DrugClass
    match_method: MatchMethod
    segments: tuple[DoseSegment, ...]

    @property
    def start(self) -> dt.date:
        return min(s.start for s in self.segments)

    def end(self, as_of: dt.date) -> dt.date:
        """The last day of the course, an ongoing course running until ``as_of``."""
        last = max(as_of if s.end is None else s.end for s in self.segments)
        # Never past as_of (the future is not exposure), never before the start (a course not yet begun).
        return max(self.start, min(last, as_of))

    @property
    def ongoing(self) -> bool:
        return any(s.end is None for s in self.segments)

    @property
    def evidence(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.evidence for s in self.segments))


@dataclass(frozen=True, slots=True)
class CurrentMedication:
    """A medication of interest for warnings (MAOI, psychostimulant) with its exposure."""

    name: str
    category: MedicationCategory
    start: dt.date | None
    end: dt.date | None
    status: str
    evidence: str
    #: For a CNS depressant: ``benzodiazepine``, ``z_drug`` or ``opioid``.
    drug_class: str = ""

    def is_current(self, as_of: dt.date) -> bool:
        """Taken on ``as_of``: started by then and not ended before it (no end means still running)."""
        return self.start is not None and self.start <= as_of and (self.end is None or self.end >= as_of)


@dataclass(frozen=True, slots=True)
class NonAdherence:
    """A record that a medication was not taken as prescribed (US Core adherence extension, or a MedicationStatement
    not-taken or with a non-adherence statusReason): the trial it falls in cannot be judged adequate (issue #20)."""

    ingredient: str
    day: dt.date
    evidence: str
    description: str


class KetamineProduct(StrEnum):
    ESKETAMINE_NASAL = "esketamine_nasal"
    #: Racemic ketamine in any form (IV infusion, compounded): the label's schedule is esketamine's.
    KETAMINE = "ketamine"


class ExposureKind(StrEnum):
    """What a ketamine/esketamine record says: a dose given or dispensed (a day), or an order or statement (a span)."""

    ADMINISTRATION = "administration"
    DISPENSE = "dispense"
    STATEMENT = "statement"
    REQUEST = "request"


@dataclass(frozen=True, slots=True)
class KetamineExposure:
    """One record of ketamine or esketamine treatment.

    A dose (administration, dispense) is one day: ``end`` equals ``start``. An order or a statement is a span:
    ``end`` None means it is still running (``active``), with no end written.
    """

    reference: str
    kind: ExposureKind
    product: KetamineProduct
    name: str
    start: dt.date
    end: dt.date | None
    active: bool = False
    dose_mg: float | None = None

    @property
    def is_dose(self) -> bool:
        return self.kind in (ExposureKind.ADMINISTRATION, ExposureKind.DISPENSE)


@dataclass(frozen=True, slots=True)
class ClinicalFacts:
    """Everything the rules need about one patient, plus what could not be obtained."""

    patient: PatientFact | None
    conditions: tuple[ConditionFact, ...] = ()
    courses: tuple[Course, ...] = ()
    other_medications: tuple[CurrentMedication, ...] = ()
    scores: tuple[ScoreFact, ...] = ()
    blood_pressures: tuple[BloodPressureFact, ...] = ()
    lab_results: tuple[LabResultFact, ...] = ()
    allergies: tuple[AllergyFact, ...] = ()
    gaps: tuple[DataGap, ...] = ()
    skipped: tuple[SkippedEntry, ...] = ()
    unmatched_medications: tuple[str, ...] = field(default=())
    patient_id: str | None = None
    free_text_problems: tuple[FreeTextProblem, ...] = ()
    #: Ketamine/esketamine records (doses, orders, statements), oldest first.
    ketamine: tuple[KetamineExposure, ...] = ()
    #: Records of antidepressants not taken as prescribed (issue #20).
    nonadherence: tuple[NonAdherence, ...] = ()

    def lacks(self, *domains: DataDomain) -> bool:
        """True when a gap leaves any of these domains incomplete: the rules reading them say "unknown"."""
        return any(d in g.domains for g in self.gaps for d in domains)

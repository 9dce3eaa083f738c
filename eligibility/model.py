"""The assessment: what the rules conclude, with the evidence and the data gaps behind every conclusion."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from fhir_mapping import DataGap, DrugClass, MatchMethod

if TYPE_CHECKING:
    from .course import TreatmentCourse


class Verdict(StrEnum):
    CANDIDATE = "candidate"
    NEEDS_WORKUP = "needs_workup"
    NOT_INDICATED = "not_indicated"
    CONTRAINDICATED = "contraindicated"
    #: A current course without contraindication, responding (or still in induction): continue it.
    CONTINUE = "continue"
    #: A current course past induction with a partial or no response: evaluate the benefit before continuing.
    REASSESS = "reassess"


class Criterion(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


class ContraindicationId(StrEnum):
    PSYCHOSIS = "psychosis"
    BIPOLAR = "bipolar"
    UNCONTROLLED_HYPERTENSION = "uncontrolled_hypertension"
    CARDIOVASCULAR_DISEASE = "cardiovascular_disease"
    ANEURYSM_OR_AVM = "aneurysm_or_avm"
    INTRACEREBRAL_HEMORRHAGE = "intracerebral_hemorrhage"
    SUBSTANCE_USE = "substance_use"
    PREGNANCY = "pregnancy"
    KETAMINE_HYPERSENSITIVITY = "ketamine_hypersensitivity"


#: The esketamine US label's own contraindications (SPRAVATO PI §4: aneurysmal vascular disease or AVM,
#: intracerebral hemorrhage, hypersensitivity). Every other exclusion is a choice of the clinic policy.
LABEL_CONTRAINDICATIONS = frozenset({ContraindicationId.ANEURYSM_OR_AVM, ContraindicationId.INTRACEREBRAL_HEMORRHAGE,
                                     ContraindicationId.KETAMINE_HYPERSENSITIVITY})


class Mode(StrEnum):
    """What a present contraindication does under a policy: exclude (the verdict), or caution (a warning)."""

    EXCLUDE = "exclude"
    CAUTION = "caution"


class AssessedCriterion(StrEnum):
    """The indication criteria, as a reason's subject."""

    DEPRESSION = "depression"
    TREATMENT_RESISTANCE = "treatment_resistance"
    SEVERITY = "severity"
    #: A current course's benefit (its PHQ-9 response from baseline).
    RESPONSE = "response"


class ReasonKind(StrEnum):
    CONTRAINDICATION = "contraindication"
    ANXIETY_WITHOUT_DEPRESSION = "anxiety_without_depression"
    DEPRESSION_ABSENT = "depression_absent"
    TREATMENT_RESISTANCE_NOT_MET = "treatment_resistance_not_met"
    SEVERITY_NOT_MET = "severity_not_met"
    UNKNOWN = "unknown"
    CANDIDATE = "candidate"
    CONTINUE = "continue"
    REASSESS = "reassess"


class WarningId(StrEnum):
    SUICIDE_RISK_REVIEW = "suicide_risk_review"
    BP_MONITORING_MAOI = "bp_monitoring_maoi"
    BP_MONITORING_PSYCHOSTIMULANT = "bp_monitoring_psychostimulant"
    #: A current benzodiazepine, Z-drug or opioid: CNS depressants add to esketamine's sedation (US PI §7.1).
    CNS_DEPRESSANT_SEDATION = "cns_depressant_sedation"
    OLDER_ADULT = "older_adult"
    #: A contraindication the policy treats as a caution (``Warning.contraindication`` says which).
    CAUTION = "caution"


class Outcome(StrEnum):
    RESPONSE = "response"
    NO_RESPONSE = "no_response"
    UNKNOWN = "unknown"


class Adequacy(StrEnum):
    ADEQUATE = "adequate"
    INADEQUATE = "inadequate"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a conclusion: the resource, what it says, and when."""

    reference: str
    description: str
    day: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    day: dt.date
    reference: str
    #: "computed from the nine items", "from an entry that failed validation" (issue #20), else empty.
    note: str = ""


@dataclass(frozen=True, slots=True)
class TrialAssessment:
    ingredient: str
    drug_class: DrugClass
    match_method: MatchMethod
    start: dt.date
    end: dt.date
    ongoing: bool
    max_daily_dose_mg: float | None
    dose_floor_mg: float | None
    weeks_total: float
    weeks_at_adequate_dose: float
    adequacy: Adequacy
    baseline: Score | None
    follow_up: Score | None
    outcome: Outcome
    evidence: tuple[str, ...]
    notes: tuple[str, ...] = ()
    #: The course's last record gives a date but no length: adequacy waits on its documented duration.
    duration_unknown: bool = False
    #: Records of non-adherence during the trial (issue #20): its adequacy is unknown until adherence is confirmed.
    nonadherence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DepressionFinding:
    status: Presence
    evidence: tuple[Evidence, ...]
    anxiety_evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class TreatmentResistance:
    status: Criterion
    failed_adequate_trials: int
    trials: tuple[TrialAssessment, ...]
    explanation: str


@dataclass(frozen=True, slots=True)
class Severity:
    status: Criterion
    threshold: float
    phq9: Score | None
    explanation: str


@dataclass(frozen=True, slots=True)
class ContraindicationFinding:
    id: ContraindicationId
    status: Presence
    mode: Mode
    evidence: tuple[Evidence, ...]
    explanation: str


class WorkupKind(StrEnum):
    PHQ9 = "phq9"
    BLOOD_PRESSURE = "blood_pressure"
    DRUG_SCREEN = "drug_screen"
    PREGNANCY_TEST = "pregnancy_test"
    TRIAL_RESPONSE = "trial_response"
    TRIAL_DOSE = "trial_dose"
    TRIAL_DURATION = "trial_duration"
    CONDITION_REVIEW = "condition_review"
    DATA = "data"
    #: A current course without a PHQ-9 before its first dose: its indication and benefit cannot be judged.
    BASELINE_PHQ9 = "baseline_phq9"
    #: A trial recorded as not taken as prescribed (issue #20).
    ADHERENCE = "adherence"


@dataclass(frozen=True, slots=True)
class WorkupItem:
    kind: WorkupKind
    text: str
    required: bool


@dataclass(frozen=True, slots=True)
class Warning:
    id: WarningId
    text: str
    evidence: tuple[Evidence, ...] = ()
    contraindication: ContraindicationId | None = None

    @property
    def code(self) -> str:
        """The id of the JSON interface: ``caution_<contraindication>`` for a caution, else the id."""
        if self.id is WarningId.CAUTION and self.contraindication is not None:
            return f"caution_{self.contraindication.value}"
        return self.id.value


@dataclass(frozen=True, slots=True)
class Reason:
    kind: ReasonKind
    text: str
    subject: ContraindicationId | AssessedCriterion | None = None

    @property
    def code(self) -> str:
        """The code of the JSON interface: ``contraindication:<id>``, ``unknown:<criterion>``, or the kind."""
        return f"{self.kind.value}:{self.subject.value}" if self.subject is not None else self.kind.value


@dataclass(frozen=True, slots=True)
class Assessment:
    patient: str
    as_of: dt.date
    policy: str
    verdict: Verdict
    reasons: tuple[Reason, ...]
    depression: DepressionFinding
    treatment_resistance: TreatmentResistance
    severity: Severity
    contraindications: dict[ContraindicationId, ContraindicationFinding]
    workup: tuple[WorkupItem, ...]
    warnings: tuple[Warning, ...]
    data_gaps: tuple[str, ...]
    skipped_entries: tuple[str, ...] = field(default=())
    #: The patient's most recent ketamine/esketamine course (current or earlier); None when none is on record.
    course: TreatmentCourse | None = None
    #: The gaps behind ``data_gaps``, as facts: what the faces word for a clinician (``gap_words``).
    gaps: tuple[DataGap, ...] = ()

"""CDS Hooks 2.0 wire formats (pydantic at the edge): requests in, cards and discovery out."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from storage import storable

#: FHIR R4 id grammar (http://hl7.org/fhir/R4/datatypes.html#id) and a relative reference to one resource.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")


def _storable(value: str) -> str:
    # The store's own rule (NUL, lone surrogates); the length is the Field's.
    if not storable(value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")  # never echo the value
    return value


# Strings the shared state keeps: at most their column's size (``storage/schema.py``, the same limit on SQLite and
# PostgreSQL) and nothing a database refuses. Checked at the edge, so both stores see only what they can store.
HookInstance = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
CardUuid = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]
OutcomeTimestamp = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]
#: Free text (override reasons and comments) is stored whole: bounded, so that one call cannot fill the store.
FreeText = Annotated[str, Field(max_length=2000), AfterValidator(_storable)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class FhirAuthorization(_Wire):
    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"  # noqa: S105 - the spec's fixed value, not a secret
    expires_in: int | None = None
    scope: str = ""
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:  # never print the token
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r})"

    __str__ = __repr__


class CdsRequest(_Wire):
    hook: str = Field(min_length=1)
    hookInstance: HookInstance
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("fhirServer must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _server_with_authorization(self) -> CdsRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self


class Hook(StrEnum):
    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"
    APPOINTMENT_BOOK = "appointment-book"
    ENCOUNTER_DISCHARGE = "encounter-discharge"


class CardKind(StrEnum):
    """What concern a card speaks to (the feedback report groups by it; the EHR never sees it)."""

    CONTRAINDICATED = "contraindicated"
    WORK_UP_NEEDED = "work_up_needed"
    NOT_INDICATED = "not_indicated"
    CRITERIA_MET = "criteria_met"
    FDA_WARNS = "fda_warns"
    CAUTION = "caution"
    ACTIVE_THERAPY = "active"
    #: A current ketamine/esketamine course: continue it, or reassess its benefit (issue #23).
    COURSE_CONTINUES = "course_continues"
    COURSE_REASSESS = "course_reassess"
    DOSE_OUTSIDE_LABEL = "dose_outside_label"
    TREATMENT_RESISTANT = "treatment_resistant"
    # Treatment sessions (one per session check).
    SESSION_SLOT_TOO_SHORT = "session_slot_too_short"
    SESSION_TOO_MANY = "session_too_many"
    SESSION_BP_ELEVATED = "session_bp_elevated"
    SESSION_TRANSPORT = "session_transport"
    SESSION_BENEFIT_NOT_ASSESSED = "session_benefit_not_assessed"
    DISCHARGE_TOO_EARLY = "discharge_too_early"
    DISCHARGE_NO_BP_AFTER_DOSE = "discharge_no_bp_after_dose"
    DISCHARGE_BP_NOT_DECREASING = "discharge_bp_not_decreasing"
    DISCHARGE_AFTERCARE = "discharge_aftercare"
    SESSION_CHECKS_NOT_MADE = "session_checks_not_made"
    #: Records of another patient or encounter, or invalid ones, left out of the session checks.
    SESSION_RECORDS_LEFT_OUT = "session_records_left_out"
    #: Cards left out of an answer over the cap (``max_cards``).
    CARDS_LEFT_OUT = "cards_left_out"
    OTHER = "other"


class Indicator(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Coding(BaseModel):
    system: str
    code: str
    display: str


class Source(BaseModel):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(BaseModel):
    label: str
    uuid: str
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(BaseModel):
    # What concern the card speaks to, for the feedback report; never sent to the EHR.
    kind: CardKind = Field(default=CardKind.OTHER, exclude=True)
    uuid: str
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    #: The assessment the card renders, machine-readable: ``{"ketamine-cds": {"verdict", "policy", "as_of"}}``.
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _spec_invariants(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("cds-resp-6: suggestions need selectionBehavior")
        for link in self.links or []:
            if link.appContext is not None and link.type != "smart":
                raise ValueError("cds-resp-3: appContext only on smart links")
        for suggestion in self.suggestions or []:
            for action in suggestion.actions:
                if action.type == "delete" and not action.resourceId:
                    raise ValueError("cds-resp-2: delete needs resourceId")
        return self


class CdsResponse(BaseModel):
    cards: list[Card]


class OverrideReason(_Wire):
    code: FreeText | None = None
    display: FreeText | None = None
    system: str | None = None


class FeedbackOverride(_Wire):
    reason: dict[str, Any] | None = None
    userComment: FreeText | None = None

    @field_validator("reason")
    @classmethod
    def _storable_reason(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # The code and display are stored (as text, when they are text); any other member is not.
        if value is not None:
            OverrideReason.model_validate({k: v for k, v in value.items() if k in ("code", "display")
                                           and isinstance(v, str) and v})
        return value


class AcceptedSuggestion(_Wire):
    id: CardUuid


class FeedbackOutcome(StrEnum):
    """What the clinician did with a card (CDS Hooks 2.0 feedback ``outcome``)."""

    ACCEPTED = "accepted"
    OVERRIDDEN = "overridden"


class FeedbackItem(_Wire):
    card: CardUuid
    outcome: FeedbackOutcome
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=50)
    overrideReason: FeedbackOverride | None = None
    outcomeTimestamp: OutcomeTimestamp

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> FeedbackItem:
        if self.outcome is FeedbackOutcome.ACCEPTED and self.acceptedSuggestions is None:
            raise ValueError("acceptedSuggestions is required when outcome is accepted")
        return self


class FeedbackRequest(_Wire):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)

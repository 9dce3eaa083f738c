"""Data gaps in a clinician's words: what could not be obtained, why, and what therefore stays unknown.

``Assessment.data_gaps`` keeps the machine form for ``evaluate``'s JSON (resource type, reason code, record ids);
the card, the review and the text report show these sentences instead: no reason code, no search key, no record id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from fhir_mapping import DataDomain, DataGap, GapReason, ResourceType

#: What could not be obtained, and the noun of one of its entries (for "2 diagnosis entries could not be read").
_WHAT: dict[ResourceType, tuple[str, str]] = {
    ResourceType.PATIENT: ("The patient's record", "patient"),
    ResourceType.CONDITION: ("Diagnoses", "diagnosis"),
    ResourceType.MEDICATION_STATEMENT: ("Medication history", "medication history"),
    ResourceType.MEDICATION_REQUEST: ("Medication orders", "medication order"),
    ResourceType.MEDICATION: ("A medication that an order or statement names", "medication"),
    ResourceType.OBSERVATION: ("Observations", "observation"),
    ResourceType.QUESTIONNAIRE_RESPONSE: ("Questionnaire answers", "questionnaire"),
    ResourceType.ALLERGY_INTOLERANCE: ("Allergies", "allergy"),
    ResourceType.APPOINTMENT: ("Appointments", "appointment"),
    ResourceType.ENCOUNTER: ("The encounter", "encounter"),
    ResourceType.MEDICATION_ADMINISTRATION: ("Doses given", "dose"),
    ResourceType.SERVICE_REQUEST: ("Orders for tests", "order"),
    ResourceType.MEDICATION_DISPENSE: ("Doses dispensed", "dispense"),
}
_WHY = {
    GapReason.TIMEOUT: "the EHR did not answer in time",
    GapReason.UNAUTHORIZED: "access was not granted",
    GapReason.FORBIDDEN: "access was not granted",
    GapReason.NOT_AUTHORIZED_SCOPE: "this app or service was not granted access to them",
    GapReason.SERVER_ERROR: "the EHR reported an error",
    GapReason.REJECTED: "the EHR refused the request",
    GapReason.NETWORK_ERROR: "the EHR could not be reached",
    GapReason.MALFORMED: "the EHR's answer could not be read",
    GapReason.BUDGET_EXCEEDED: "there was too much to read in the time allowed",
    GapReason.TOO_LARGE: "there was too much to read in the time allowed",
    GapReason.NOT_PROVIDED: "they were not sent",
    GapReason.NOT_FOUND: "they were not found",
    GapReason.UNRESOLVED_REFERENCE: "the record it points to could not be found",
    GapReason.INCOMPLETE: "the EHR said its results were incomplete",
    GapReason.UNREADABLE: "an entry could not be read",
}
_UNKNOWN = {
    DataDomain.PATIENT: "age and sex",
    DataDomain.CONDITIONS: "diagnoses (depression and the contraindications)",
    DataDomain.MEDICATIONS: "antidepressant trials",
    DataDomain.PHQ9: "PHQ-9 scores",
    DataDomain.GAD7: "GAD-7 scores",
    DataDomain.BLOOD_PRESSURE: "blood pressure",
    DataDomain.DRUG_SCREENS: "drug screens and substance use",
    DataDomain.PREGNANCY: "pregnancy",
    DataDomain.ALLERGIES: "ketamine allergy",
    DataDomain.TREATMENT_COURSE: "the ketamine/esketamine course",
    DataDomain.APPOINTMENTS: "the patient's other sessions",
    DataDomain.ENCOUNTER: "this session",
    DataDomain.ADMINISTRATIONS: "the doses given",
    DataDomain.SESSION_BLOOD_PRESSURE: "blood pressure after the dose",
}
#: The order the unknown parts are named in (the rules' own order on the card).
_DOMAIN_ORDER = tuple(DataDomain)


def _domains(gaps: Iterable[DataGap]) -> str:
    found = {d for g in gaps for d in g.domains}
    words = list(dict.fromkeys(_UNKNOWN[d] for d in _DOMAIN_ORDER if d in found))
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def gap_sentence(gap: DataGap, count: int = 1) -> str:
    """One gap (or ``count`` alike) as a sentence a clinician reads: what, why, and what stays unknown."""
    what, noun = _WHAT[gap.resource_type]
    if gap.reason is GapReason.UNREADABLE:
        head = f"{count} {noun} {'entry' if count == 1 else 'entries'} could not be read"
    elif gap.resource_type is ResourceType.MEDICATION and count > 1:
        why = "the records they point to could not be found" if gap.reason is GapReason.UNRESOLVED_REFERENCE \
            else _WHY[gap.reason]
        head = f"{count} medications that orders or statements name could not be obtained: {why}"
    else:
        head = f"{what} could not be obtained: {_WHY[gap.reason]}"
    unknown = _domains([gap])
    return f"{head}. Unknown, not absent: {unknown}." if unknown else f"{head}."


def _alike(gaps: Sequence[DataGap]) -> list[list[DataGap]]:
    """Gaps grouped when alike (same type, reason and unknown parts), in the order they were found."""
    groups: dict[tuple[ResourceType, GapReason, frozenset[DataDomain]], list[DataGap]] = {}
    for gap in gaps:
        groups.setdefault((gap.resource_type, gap.reason, gap.domains), []).append(gap)
    return list(groups.values())


def gap_sentences(gaps: Sequence[DataGap]) -> tuple[str, ...]:
    """Every gap once, alike gaps (same type, reason and unknown parts: several unreadable drug references) as one
    sentence with their number, in the order they were found."""
    return tuple(dict.fromkeys(gap_sentence(alike[0], len(alike)) for alike in _alike(gaps)))


class GapAction(StrEnum):
    """What a clinician can do about a gap: asking again helps only when the EHR failed to answer."""

    RETRY = "Retry, or review in the chart"
    CONFIRM_DRUG = "Confirm in the chart which drug is meant"
    REVIEW = "Review in the chart"


#: Failures of the EHR's answer, which another try may not repeat; every other reason (access refused, a record
#: missing or unreadable, nothing sent) comes back the same way, so the chart is where to look.
_TRANSIENT = frozenset({GapReason.TIMEOUT, GapReason.SERVER_ERROR, GapReason.NETWORK_ERROR, GapReason.MALFORMED,
                        GapReason.BUDGET_EXCEEDED, GapReason.TOO_LARGE, GapReason.INCOMPLETE})


def gap_action(gap: DataGap) -> GapAction:
    if gap.reason in _TRANSIENT:
        return GapAction.RETRY
    if gap.resource_type is ResourceType.MEDICATION:
        return GapAction.CONFIRM_DRUG
    return GapAction.REVIEW


#: The action as the few words of a card's summary ("Work-up before esketamine: …").
_ACTION_PHRASE = {
    GapAction.RETRY: "chart data could not be fetched (retry)",
    GapAction.CONFIRM_DRUG: "confirm which drug a medication order names",
    GapAction.REVIEW: "review the chart for data that could not be obtained",
}


def gap_action_phrase(action: GapAction) -> str:
    return _ACTION_PHRASE[action]


@dataclass(frozen=True, slots=True)
class GapStep:
    """A work-up step for data that could not be obtained: what to do, the words, and what stays unknown."""

    action: GapAction
    text: str
    domains: frozenset[DataDomain]


def gap_workup(gaps: Sequence[DataGap]) -> tuple[GapStep, ...]:
    """Each gap (alike ones once) as a work-up step: what to do about it, and the sentence that says what is
    missing."""
    steps: dict[str, GapStep] = {}
    for alike in _alike(gaps):
        action = gap_action(alike[0])
        text = f"{action.value}: {gap_sentence(alike[0], len(alike))}"
        steps.setdefault(text, GapStep(action, text, alike[0].domains))
    return tuple(steps.values())

"""What the review page shows, without HTTP: read the patient's data with the granted scopes, assess it, and say
why when it cannot be shown. The route only renders this (and tests call it directly against a FHIR server)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from eligibility import Assessment, Policy, assess_pool
from fhir_mapping import (
    SEARCHED_TYPES,
    SEARCHES,
    ClinicalFacts,
    DataGap,
    FetchResult,
    FhirClient,
    GapReason,
    OnFailure,
    QueryReport,
    ResourceType,
    domains_of,
    patient_queries,
)

from .errors import ReviewProblem


@dataclass(frozen=True, slots=True)
class Review:
    assessment: Assessment
    facts: ClinicalFacts
    reports: tuple[QueryReport, ...]
    not_authorized: frozenset[str]
    failed: dict[str, str]


_UNREACHABLE = (GapReason.NETWORK_ERROR, GapReason.TIMEOUT, GapReason.BUDGET_EXCEEDED)


async def load_review(client: FhirClient, patient_id: str, granted: set[str], policy: Policy,
                      as_of: dt.date) -> Review:
    """The patient's data as far as ``granted`` (resource types the scopes allow) reaches, assessed.

    Raises :class:`ReviewProblem` when there is nothing to assess: the server does not answer, the patient does not
    exist there, or the server refuses the patient read (a verdict over "unknown" data would mislead).
    """
    fetchable = {t for t in SEARCHED_TYPES if t.value in granted}
    result = await client.fetch(patient_queries(patient_id, fetchable, client.settings.page_size))
    not_authorized = [t for t in SEARCHED_TYPES if t.value not in granted]
    _note_ungranted(result, not_authorized)
    _raise_when_unreadable(result)
    assessment, facts = assess_pool(result.pool, policy, as_of, patient_id)
    failed = {r.key or r.resource_type.value: r.gap.describe() for r in result.reports if r.gap is not None}
    return Review(assessment, facts, tuple(result.reports), frozenset(t.value for t in not_authorized), failed)


def _note_ungranted(result: FetchResult, not_authorized: list[ResourceType]) -> None:
    """Records in the pool, as a gap, each searched type the granted scopes leave out."""
    for rtype in not_authorized:
        if all(s.on_failure is OnFailure.SUPPLEMENTARY for s in SEARCHES if s.resource_type is rtype):
            continue  # a supplementary source the EHR did not grant: as if the server did not offer it
        result.pool.gaps.append(DataGap(rtype, GapReason.NOT_AUTHORIZED_SCOPE, "not covered by the granted scopes",
                                        domains_of(rtype)))


def _raise_when_unreadable(result: FetchResult) -> None:
    """Raises :class:`ReviewProblem` when the fetch leaves nothing that may be assessed."""
    if result.reports and all(r.gap is not None and r.gap.reason in _UNREACHABLE for r in result.reports):
        raise ReviewProblem("The EHR's FHIR server is not answering",
                            "No data could be read. Try again in a moment; nothing has been assessed.", 502)
    patient_gap = result.patient_gap
    if patient_gap is not None and patient_gap.reason is GapReason.NOT_FOUND:
        raise ReviewProblem("Patient not found",
                            "The EHR's FHIR server has no record of the patient in context; nothing has been "
                            "assessed. Relaunch the app from the patient's chart.", 404)
    if patient_gap is not None and patient_gap.reason in (GapReason.UNAUTHORIZED, GapReason.FORBIDDEN):
        raise ReviewProblem("The EHR refused access to this patient",
                            "The app's access was refused or has expired. Relaunch the app from the EHR.", 401)

"""Prefetch: what we ask the EHR for, and how we take what it sends.

A key may be absent (not provided), ``null`` (no data), an empty Bundle, an OperationOutcome (the client failed),
or one page of many (follow ``next``). What is missing, failed or paged is fetched from ``fhirServer`` with
``fhirAuthorization``, all queries concurrently, inside a time budget. Whatever still cannot be had becomes a typed
gap, which the rules read as "unknown", never "absent".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from fhir_mapping import (
    SEARCHES,
    ClientSettings,
    DataGap,
    FhirClient,
    GapReason,
    OnFailure,
    Query,
    QueryReport,
    ResourcePool,
    ResourceType,
    Search,
    SearchScope,
    add_json,
)

#: The order services' prefetch templates, derived from the one search table (``fhir_mapping.SEARCHES``); each
#: service lists its own in discovery (the session services add theirs).
TEMPLATES = {s.key: s.template() for s in SEARCHES}
PREFETCH_KEYS = SEARCHES


class PrefetchState(StrEnum):
    """How a prefetch key arrived (CDS Hooks 2.0 §Prefetch)."""

    PROVIDED = "provided"
    NULL = "null"
    ABSENT = "absent"
    OPERATION_OUTCOME = "operation_outcome"
    PAGED = "paged"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class KeyReport:
    """What happened to one prefetch key: how it arrived and whether we fetched it ourselves."""

    key: str
    state: str
    fetched: bool
    gap: DataGap | None


@dataclass(slots=True)
class PatientData:
    pool: ResourcePool
    keys: list[KeyReport]
    queries: list[QueryReport]

    def missing_required(self) -> list[str]:
        """The required data (Patient, Conditions) that could not be obtained: the service answers 412. A required
        search the server answered with some results withheld (its searchset's warning, GapReason.INCOMPLETE) was
        obtained: the cards say its rules are unknown, as ``evaluate`` and the app do for the same chart."""
        required = {s.key for s in SEARCHES if s.on_failure is OnFailure.REQUIRED}
        return sorted({g.resource_type.value for g in self.pool.gaps if g.reason is not GapReason.INCOMPLETE
                       and any(k in required for k in g.search.split("+"))})

    def patient_found(self, patient_id: str) -> bool:
        """Whether the patient of the call is among the data (a prefetch about another patient is not this one)."""
        return any(r["id"] == patient_id for r in self.pool.of_type(ResourceType.PATIENT))


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _state(search: Search, value: Any) -> PrefetchState:
    if value is None:
        return PrefetchState.NULL
    if not isinstance(value, Mapping):
        return PrefetchState.INVALID
    rtype = value.get("resourceType")
    if rtype == "OperationOutcome":
        return PrefetchState.OPERATION_OUTCOME
    if rtype == "Bundle":
        if "entry" in value and not isinstance(value.get("entry"), list):
            return PrefetchState.INVALID
        return PrefetchState.PAGED if _next_link(value) else PrefetchState.PROVIDED
    if rtype == search.resource_type.value and not search.is_search:
        return PrefetchState.PROVIDED
    return PrefetchState.INVALID


def _merged_state(states: dict[str, PrefetchState], key: str) -> str:
    """The state of a key, or of the keys a merged Observation search stands for ("phq9+gad7")."""
    return "+".join(dict.fromkeys(states[k].value for k in key.split("+")))


def _merge_observation_queries(to_fetch: list[Query]) -> list[Query]:
    """Several missing Observation searches of the patient become one search with all their codes: fewer round
    trips. A failure of the merged search leaves every domain of its parts unknown. Searches narrowed by more than
    the patient and the code (an encounter) keep their own request."""
    def patient_and_code(q: Query) -> bool:
        return {k for k, _ in q.params} <= {"patient", "code", "_count"}
    searches = [q for q in to_fetch if q.resource_type is ResourceType.OBSERVATION and q.path == "Observation"
                and patient_and_code(q)]
    if len(searches) < 2:
        return to_fetch
    params = dict(searches[0].params)
    params["code"] = ",".join(dict(q.params)["code"] for q in searches)
    merged = Query(ResourceType.OBSERVATION, "Observation", tuple(params.items()),
                   "+".join(q.key for q in searches), frozenset().union(*(q.domains for q in searches)))
    return [*(q for q in to_fetch if q not in searches), merged]


async def gather_patient_data(
    patient_id: str,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    budget_s: float,
    http: httpx.AsyncClient | None = None,
    client_settings: ClientSettings | None = None,
    *,
    searches: Sequence[Search] = SEARCHES,
    encounter_id: str | None = None,
    today: dt.date | None = None,
) -> PatientData:
    """Prefetched data where it is usable; the FHIR server for the rest, concurrently, within ``budget_s``.
    ``searches``: the service's own table (the order services', or a session service's)."""
    pool = ResourcePool()
    reports: list[KeyReport] = []
    to_fetch: list[Query] = []
    prefetch = prefetch or {}
    states: dict[str, PrefetchState] = {}
    for search in searches:
        value = prefetch.get(search.key)
        state = states[search.key] = _state(search, value) if search.key in prefetch else PrefetchState.ABSENT
        if state in (PrefetchState.PROVIDED, PrefetchState.PAGED):
            add_json(pool, value, f"prefetch[{search.key}]",
                     SearchScope(search.resource_type, search.domains, search.key))
        if state is PrefetchState.PAGED and isinstance(value, Mapping):
            next_url = _next_link(value)
            assert next_url is not None
            to_fetch.append(search.next_page(next_url))
        elif state in (PrefetchState.ABSENT, PrefetchState.OPERATION_OUTCOME, PrefetchState.INVALID):
            to_fetch.append(search.query(patient_id, encounter_id=encounter_id, today=today))
        elif state is PrefetchState.NULL and search.resource_type is ResourceType.PATIENT:
            # The spec's null means "no data": for the patient read, a patient we cannot evaluate.
            to_fetch.append(search.query(patient_id, encounter_id=encounter_id, today=today))
        if state in (PrefetchState.PROVIDED, PrefetchState.NULL) and not (
                state is PrefetchState.NULL and search.resource_type is ResourceType.PATIENT):
            reports.append(KeyReport(search.key, state.value, False, None))

    to_fetch = _merge_observation_queries(to_fetch)
    queries: list[QueryReport] = []
    if not fhir_server:
        for query in to_fetch:
            arrived = _merged_state(states, query.key)
            if query.on_failure is OnFailure.SUPPLEMENTARY and arrived == PrefetchState.ABSENT:
                reports.append(KeyReport(query.key, arrived, False, None))
                continue
            gap = DataGap(query.resource_type, GapReason.NOT_PROVIDED,
                          f"prefetch '{query.key}' {arrived.replace('_', ' ')} and no fhirServer to ask",
                          query.domains, query.key)
            pool.gaps.append(gap)
            reports.append(KeyReport(query.key, arrived, False, gap))
        return PatientData(pool, reports, queries)
    settings = client_settings or ClientSettings(budget_s=budget_s, request_timeout_s=budget_s)
    client = FhirClient(fhir_server, token=access_token, http=http, settings=settings)
    # Prefetched records may reference Medications the prefetch did not include: the client reads those too.
    result = await client.fetch(to_fetch, seed=pool)
    queries = result.reports
    for query, report in zip(to_fetch, result.reports, strict=False):
        reports.append(KeyReport(query.key, _merged_state(states, query.key), True, report.gap))
    return PatientData(pool, reports, queries)

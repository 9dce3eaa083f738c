"""Prefetch: what we ask the EHR for, and how we take what it sends.

A key may be absent (not provided), ``null`` (no data), an empty Bundle, an OperationOutcome (the client failed),
or one page of many (follow ``next``). What is missing, failed or paged is fetched from ``fhirServer`` with
``fhirAuthorization``, all queries concurrently, inside a time budget. Whatever still cannot be had becomes a typed
gap, which the rules read as "unknown", never "absent".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from fhir_mapping import (
    ClientSettings,
    DataGap,
    FhirClient,
    GapReason,
    Query,
    QueryReport,
    ResourcePool,
    ResourceType,
    add_json,
)
from fhir_mapping.client import OBSERVATION_CODE_GROUPS

LOINC = "http://loinc.org"
_MS_STATUSES = "active,completed,entered-in-error,intended,stopped,on-hold,unknown,not-taken"
_MR_STATUSES = "active,on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown"


@dataclass(frozen=True, slots=True)
class PrefetchKey:
    key: str
    resource_type: ResourceType
    path: str
    params: tuple[tuple[str, str], ...]

    def template(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.path}?{query}" if query else self.path

    def query(self, patient_id: str) -> Query:
        params = tuple((k, v.replace("{{context.patientId}}", patient_id)) for k, v in self.params)
        return Query(self.resource_type, self.path.replace("{{context.patientId}}", patient_id), params)


def _codes(*codes: str) -> str:
    return ",".join(f"{LOINC}|{c}" for c in codes)


_P = ("patient", "{{context.patientId}}")
PREFETCH_KEYS: tuple[PrefetchKey, ...] = (
    PrefetchKey("patient", ResourceType.PATIENT, "Patient/{{context.patientId}}", ()),
    PrefetchKey("conditions", ResourceType.CONDITION, "Condition", (_P,)),
    PrefetchKey("medicationStatements", ResourceType.MEDICATION_STATEMENT, "MedicationStatement",
                (_P, ("status", _MS_STATUSES))),
    PrefetchKey("medicationRequests", ResourceType.MEDICATION_REQUEST, "MedicationRequest",
                (_P, ("status", _MR_STATUSES))),
    *(
        PrefetchKey(key, ResourceType.OBSERVATION, "Observation",
                    (_P, ("code", _codes(*OBSERVATION_CODE_GROUPS[group]))))
        for key, group in (("phq9", "phq9"), ("gad7", "gad7"), ("bloodPressure", "blood_pressure"),
                           ("drugScreens", "drug_screens"), ("pregnancyTests", "pregnancy_tests"))
    ),
    PrefetchKey("allergies", ResourceType.ALLERGY_INTOLERANCE, "AllergyIntolerance", (_P,)),
)
TEMPLATES = {k.key: k.template() for k in PREFETCH_KEYS}
REQUIRED_TYPES = (ResourceType.PATIENT, ResourceType.CONDITION)


@dataclass(frozen=True, slots=True)
class KeyReport:
    """What happened to one prefetch key: how it arrived and whether we fetched it ourselves."""

    key: str
    state: str  # provided, null, absent, operation_outcome, paged, invalid
    fetched: bool
    gap: DataGap | None


@dataclass(slots=True)
class PatientData:
    pool: ResourcePool
    keys: list[KeyReport]
    queries: list[QueryReport]

    def missing_required(self) -> list[str]:
        return sorted({g.resource_type.value for g in self.pool.gaps if g.resource_type in REQUIRED_TYPES})


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _state(key: PrefetchKey, value: Any) -> str:
    if value is None:
        return "null"
    if not isinstance(value, Mapping):
        return "invalid"
    rtype = value.get("resourceType")
    if rtype == "OperationOutcome":
        return "operation_outcome"
    if rtype == "Bundle":
        return "paged" if _next_link(value) else "provided"
    if rtype == key.resource_type.value:
        return "provided"
    return "invalid"


def _merged_state(states: dict[str, str], key: str) -> str:
    """The state of a key, or of the keys a merged Observation search stands for ("phq9+gad7")."""
    return "+".join(dict.fromkeys(states[k] for k in key.split("+")))


def _merge_observation_queries(to_fetch: list[tuple[PrefetchKey, Query]]) -> list[tuple[PrefetchKey, Query]]:
    """Several missing Observation keys become one search with all their codes: fewer round trips."""
    searches = [(k, q) for k, q in to_fetch if k.resource_type is ResourceType.OBSERVATION and q.path == "Observation"]
    if len(searches) < 2:
        return to_fetch
    codes = ",".join(dict(q.params)["code"] for _, q in searches)
    patient = dict(searches[0][1].params)["patient"]
    merged_key = PrefetchKey("+".join(k.key for k, _ in searches), ResourceType.OBSERVATION, "Observation",
                             (("patient", patient), ("code", codes)))
    rest = [(k, q) for k, q in to_fetch if (k, q) not in searches]
    return [*rest, (merged_key, Query(ResourceType.OBSERVATION, "Observation", merged_key.params))]


async def gather_patient_data(
    patient_id: str,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    budget_s: float,
    http: httpx.AsyncClient | None = None,
) -> PatientData:
    """Prefetched data where it is usable; the FHIR server for the rest, concurrently, within ``budget_s``."""
    pool = ResourcePool()
    reports: list[KeyReport] = []
    to_fetch: list[tuple[PrefetchKey, Query]] = []
    prefetch = prefetch or {}
    states: dict[str, str] = {}
    for key in PREFETCH_KEYS:
        value = prefetch.get(key.key)
        state = states[key.key] = _state(key, value) if key.key in prefetch else "absent"
        if state in ("provided", "paged"):
            add_json(pool, value, f"prefetch[{key.key}]")
        if state == "paged" and isinstance(value, Mapping):
            next_url = _next_link(value)
            assert next_url is not None
            to_fetch.append((key, Query(key.resource_type, next_url, ())))
        elif state in ("absent", "operation_outcome", "invalid"):
            to_fetch.append((key, key.query(patient_id)))
        elif state == "null" and key.resource_type is ResourceType.PATIENT:
            # The spec's null means "no data": for the patient read, a patient we cannot evaluate.
            to_fetch.append((key, key.query(patient_id)))
        if state in ("provided", "null") and not (state == "null" and key.resource_type is ResourceType.PATIENT):
            reports.append(KeyReport(key.key, state, False, None))

    to_fetch = _merge_observation_queries(to_fetch)
    queries: list[QueryReport] = []
    if to_fetch:
        if not fhir_server:
            for key, _ in to_fetch:
                state = _merged_state(states, key.key)
                gap = DataGap(key.resource_type, GapReason.NOT_PROVIDED,
                              f"prefetch '{key.key}' {state.replace('_', ' ')} and no fhirServer to ask")
                pool.gaps.append(gap)
                reports.append(KeyReport(key.key, state, False, gap))
        else:
            client = FhirClient(fhir_server, token=access_token, http=http,
                                settings=ClientSettings(budget_s=budget_s, request_timeout_s=budget_s))
            result = await client.fetch([q for _, q in to_fetch])
            for bundle_pool_resource in result.pool.resources:
                pool.add(bundle_pool_resource, "fhirServer")
            pool.skipped.extend(result.pool.skipped)
            pool.gaps.extend(result.pool.gaps)
            queries = result.reports
            for (key, _), report in zip(to_fetch, result.reports, strict=True):
                reports.append(KeyReport(key.key, _merged_state(states, key.key), True, report.gap))
    return PatientData(pool, reports, queries)

"""An async FHIR R4 client that fetches what the rules need for one patient.

All searches run concurrently inside a total time budget. Each follows ``link[next]`` (on the server's own origin
only, so the bearer token never leaves it), retries 429/503 a bounded number of times, and turns every failure
into a :class:`DataGap` for its resource type: the rules then say "unknown", never "none found".
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .codesets import LOINC
from .facts import DataGap, GapReason, ResourceType
from .loading import ResourcePool, add_bundle

_MED_STATEMENT_STATUSES = "active,completed,entered-in-error,intended,stopped,on-hold,unknown,not-taken"
_MED_REQUEST_STATUSES = "active,on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown"
# Observation searches need a code on many EHRs; these are the LOINC codes the rules read (clinical.md §5).
OBSERVATION_CODE_GROUPS: dict[str, tuple[str, ...]] = {
    "phq9": ("44261-6", "89204-2", "44260-8"),
    "gad7": ("70274-6",),
    "blood_pressure": ("85354-9", "8480-6", "8462-4"),
    "drug_screens": ("3397-7", "19359-9", "3349-8", "19659-2", "12327-3", "19501-6"),
    "pregnancy_tests": ("2106-3", "2112-1", "2118-8", "2110-5", "80384-1", "80385-8", "21198-7", "19080-1",
                        "83086-9"),
}
OBSERVATION_CODES = tuple(code for group in OBSERVATION_CODE_GROUPS.values() for code in group)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    request_timeout_s: float = 5.0
    budget_s: float = 10.0
    max_retries: int = 2
    backoff_s: float = 0.25
    page_size: int = 200
    max_pages: int = 50


@dataclass(frozen=True, slots=True)
class Query:
    """One search the client runs: its resource type, the relative path and its parameters."""

    resource_type: ResourceType
    path: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class QueryReport:
    """Provenance of one search: what ran, how many pages and entries, how long, and any gap."""

    resource_type: ResourceType
    path: str
    params: tuple[tuple[str, str], ...]
    pages: int
    entries: int
    elapsed_ms: float
    gap: DataGap | None


@dataclass(slots=True)
class FetchResult:
    pool: ResourcePool
    reports: list[QueryReport] = field(default_factory=list)


class _Gap(Exception):
    def __init__(self, reason: GapReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def patient_queries(
    patient_id: str, types: Iterable[ResourceType] | None = None, page_size: int = 200
) -> list[Query]:
    wanted = set(types) if types is not None else set(ResourceType) - {ResourceType.MEDICATION}
    p = ("patient", patient_id)
    count = ("_count", str(page_size))
    all_queries = [
        Query(ResourceType.PATIENT, f"Patient/{patient_id}", ()),
        Query(ResourceType.CONDITION, "Condition", (p, count)),
        Query(ResourceType.MEDICATION_STATEMENT, "MedicationStatement",
              (p, ("status", _MED_STATEMENT_STATUSES), ("_include", "MedicationStatement:medication"), count)),
        Query(ResourceType.MEDICATION_REQUEST, "MedicationRequest",
              (p, ("status", _MED_REQUEST_STATUSES), ("_include", "MedicationRequest:medication"), count)),
        Query(ResourceType.OBSERVATION, "Observation",
              (p, ("code", ",".join(f"{LOINC}|{c}" for c in OBSERVATION_CODES)), count)),
        Query(ResourceType.ALLERGY_INTOLERANCE, "AllergyIntolerance", (p, count)),
    ]
    return [q for q in all_queries if q.resource_type in wanted]


class FhirClient:
    """Fetches one patient's data. Give it an ``httpx.AsyncClient`` to share connections (or a test transport)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        settings: ClientSettings | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = _origin(self.base_url)
        self._token = token
        self.settings = settings or ClientSettings()
        self._http = http

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def fetch(self, queries: list[Query]) -> FetchResult:
        """Run the queries concurrently within the budget; never raises for a server's failure."""
        result = FetchResult(ResourcePool())
        own_client = self._http is None
        http = self._http or httpx.AsyncClient(timeout=self.settings.request_timeout_s)
        deadline = time.monotonic() + self.settings.budget_s
        try:
            tasks = [asyncio.create_task(self._run(http, q, deadline)) for q in queries]
            done, pending = await asyncio.wait(tasks, timeout=self.settings.budget_s)
            for task in pending:
                task.cancel()
            for query, task in zip(queries, tasks, strict=True):
                if task in done and not task.cancelled() and task.exception() is None:
                    report, bundles = task.result()
                else:
                    gap = DataGap(query.resource_type, GapReason.BUDGET_EXCEEDED,
                                  f"no answer within the {self.settings.budget_s:g} s budget")
                    report, bundles = QueryReport(query.resource_type, query.path, query.params, 0, 0,
                                                  self.settings.budget_s * 1000, gap), []
                for i, bundle in enumerate(bundles):
                    add_bundle(result.pool, bundle, f"{query.path} page {i + 1}")
                if report.gap is not None:
                    result.pool.gaps.append(report.gap)
                result.reports.append(report)
        finally:
            if own_client:
                await http.aclose()
        return result

    async def fetch_patient(self, patient_id: str, types: Iterable[ResourceType] | None = None) -> FetchResult:
        return await self.fetch(patient_queries(patient_id, types, self.settings.page_size))

    async def _run(
        self, http: httpx.AsyncClient, query: Query, deadline: float
    ) -> tuple[QueryReport, list[dict[str, Any]]]:
        started = time.monotonic()
        bundles: list[dict[str, Any]] = []
        gap: DataGap | None = None
        absolute = query.path.startswith(("http://", "https://"))
        url: str | None = query.path if absolute else self.base_url + query.path
        params: tuple[tuple[str, str], ...] | None = query.params
        try:
            if absolute and _origin(query.path) != self._origin:
                raise _Gap(GapReason.MALFORMED, "next link points to another server")
            while url is not None:
                if len(bundles) >= self.settings.max_pages:
                    raise _Gap(GapReason.BUDGET_EXCEEDED, f"more than {self.settings.max_pages} pages")
                body = await self._get(http, url, params, deadline)
                if query.resource_type is ResourceType.PATIENT and body.get("resourceType") == "Patient":
                    bundles.append({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": body}]})
                    break
                if body.get("resourceType") != "Bundle" or not isinstance(body.get("entry", []), list):
                    raise _Gap(GapReason.MALFORMED, f"expected a Bundle, got {body.get('resourceType')!r}")
                bundles.append(body)
                url, params = self._next_link(body), None
        except _Gap as exc:
            gap = DataGap(query.resource_type, exc.reason, exc.detail)
        entries = sum(len(b.get("entry") or []) for b in bundles)
        elapsed = (time.monotonic() - started) * 1000
        return QueryReport(query.resource_type, query.path, query.params, len(bundles), entries, elapsed, gap), bundles

    def _next_link(self, bundle: dict[str, Any]) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                url = str(link["url"])
                if not url.startswith(("http://", "https://")):
                    url = self.base_url + url.lstrip("/")
                if _origin(url) != self._origin:
                    # The token is for this server only; a next link elsewhere is not followed.
                    raise _Gap(GapReason.MALFORMED, "next link points to another server")
                return url
        return None

    async def _get(
        self,
        http: httpx.AsyncClient,
        url: str,
        params: tuple[tuple[str, str], ...] | None,
        deadline: float,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Gap(GapReason.BUDGET_EXCEEDED, "time budget used up")
            timeout = min(self.settings.request_timeout_s, remaining)
            try:
                response = await http.get(url, params=params, headers=self._headers(), timeout=timeout)
            except httpx.TimeoutException as exc:
                raise _Gap(GapReason.TIMEOUT, f"no answer within {timeout:.1f} s") from exc
            except httpx.HTTPError as exc:
                raise _Gap(GapReason.NETWORK_ERROR, exc.__class__.__name__) from exc
            status = response.status_code
            if status in (429, 503) and attempt < self.settings.max_retries:
                attempt += 1
                wait = min(_retry_after(response) or self.settings.backoff_s * 2 ** (attempt - 1),
                           max(0.0, deadline - time.monotonic() - 0.05))
                await asyncio.sleep(wait)
                continue
            if status == 401:
                raise _Gap(GapReason.UNAUTHORIZED, "HTTP 401")
            if status == 403:
                raise _Gap(GapReason.FORBIDDEN, "HTTP 403")
            if status >= 400:
                reason = GapReason.SERVER_ERROR if status >= 500 or status == 429 else GapReason.REJECTED
                raise _Gap(reason, f"HTTP {status}")
            try:
                body = response.json()
            except ValueError as exc:
                raise _Gap(GapReason.MALFORMED, "response is not JSON") from exc
            if not isinstance(body, dict):
                raise _Gap(GapReason.MALFORMED, "response is not a JSON object")
            return body


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value)
    return None if parsed is None else max(0.0, parsed.timestamp() - time.time())

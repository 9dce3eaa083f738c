"""An async FHIR R4 client that fetches what the rules need for one patient.

All searches run concurrently inside a total time budget. Each follows ``link[next]`` (on the server's own origin
only, so the bearer token never leaves it), retries 429/503 a bounded number of times, and turns every failure
into a :class:`DataGap` for its resource type: the rules then say "unknown", never "none found".
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .facts import DataGap, GapReason, ResourceType
from .loading import ResourcePool, SearchScope, add_bundle, unresolved_medication_references
from .outbound import http_client
from .searches import OnFailure, Query, domains_of, patient_queries

# Parsing JSON this large on the event loop would stall every other request: it moves to a worker thread.
_PARSE_OFF_LOOP_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ClientSettings:
    request_timeout_s: float = 5.0
    budget_s: float = 10.0
    max_retries: int = 2
    backoff_s: float = 0.25
    page_size: int = 200
    max_pages: int = 50
    #: One response larger than this is not read: its search becomes a ``too_large`` gap.
    max_response_bytes: int = 20_000_000
    #: All responses of one fetch together: past this, the remaining searches become ``too_large`` gaps.
    max_total_bytes: int = 60_000_000


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
    key: str = ""
    note: str = ""


@dataclass(slots=True)
class FetchResult:
    pool: ResourcePool
    reports: list[QueryReport] = field(default_factory=list)

    @property
    def patient_gap(self) -> DataGap | None:
        """Why the Patient read failed (not found, refused …), or None: a patient not read is never assessed."""
        return next((r.gap for r in self.reports if r.resource_type is ResourceType.PATIENT and r.gap), None)


class _Gap(Exception):
    def __init__(self, reason: GapReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _gap_for(query: Query, reason: GapReason, detail: str) -> DataGap:
    return DataGap(query.resource_type, reason, detail, query.domains, query.key)


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
        self._bytes_read = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def fetch(self, queries: list[Query], *, resolve_medications: bool = True,
                    seed: ResourcePool | None = None) -> FetchResult:
        """Run the queries concurrently within the budget, then read the Medications that the records (theirs and
        ``seed``'s, e.g. a prefetch) reference but did not include; never raises for a server's failure."""
        result = FetchResult(seed if seed is not None else ResourcePool())
        self._bytes_read = 0
        own_client = self._http is None
        http = self._http or http_client(timeout=self.settings.request_timeout_s)
        deadline = time.monotonic() + self.settings.budget_s
        try:
            await self._run_all(http, queries, deadline, result)
            if resolve_medications:
                missing = unresolved_medication_references(result.pool)
                reads = [Query(ResourceType.MEDICATION, ref, (), "medication", domains_of(ResourceType.MEDICATION))
                         for ref in missing[:50]]
                if reads:
                    await self._run_all(http, reads, deadline, result)
        finally:
            if own_client:
                await http.aclose()
        return result

    async def _run_all(self, http: httpx.AsyncClient, queries: list[Query], deadline: float,
                       result: FetchResult) -> None:
        remaining = max(0.0, deadline - time.monotonic())
        tasks = [asyncio.create_task(self._run(http, q, deadline)) for q in queries]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=remaining)
        for task in pending:
            task.cancel()
        for query, task in zip(queries, tasks, strict=True):
            if task in done and not task.cancelled() and task.exception() is None:
                report, bundles = task.result()
            else:
                gap = _gap_for(query, GapReason.BUDGET_EXCEEDED,
                               f"no answer within the {self.settings.budget_s:g} s budget")
                report, bundles = QueryReport(query.resource_type, query.path, query.params, 0, 0,
                                              self.settings.budget_s * 1000, gap, query.key), []
            for i, bundle in enumerate(bundles):
                add_bundle(result.pool, bundle, f"{query.path} page {i + 1}",
                           SearchScope(query.resource_type, query.domains, query.key))
            if report.gap is not None and query.resource_type is not ResourceType.MEDICATION:
                # A Medication that cannot be read is reported by the mapping, for the record that needs it (the
                # same gap as from a file without it): one answer everywhere.
                result.pool.gaps.append(report.gap)
            result.reports.append(report)

    async def fetch_patient(self, patient_id: str, types: Iterable[ResourceType] | None = None) -> FetchResult:
        wanted = None if types is None else set(types)
        return await self.fetch(patient_queries(patient_id, wanted, self.settings.page_size))

    async def _run(
        self, http: httpx.AsyncClient, query: Query, deadline: float
    ) -> tuple[QueryReport, list[dict[str, Any]]]:
        started = time.monotonic()
        bundles: list[dict[str, Any]] = []
        gap: DataGap | None = None
        note = ""
        absolute = query.path.startswith(("http://", "https://"))
        url: str | None = query.path if absolute else self.base_url + query.path
        params: tuple[tuple[str, str], ...] | None = query.params
        is_read = not absolute and "/" in query.path
        try:
            if absolute and _origin(query.path) != self._origin:
                raise _Gap(GapReason.MALFORMED, "next link points to another server")
            while url is not None:
                if len(bundles) >= self.settings.max_pages:
                    raise _Gap(GapReason.BUDGET_EXCEEDED, f"more than {self.settings.max_pages} pages")
                body = await self._get(http, url, params, deadline, is_read)
                if is_read:
                    if body.get("resourceType") != query.resource_type.value:
                        raise _Gap(GapReason.MALFORMED, f"expected a {query.resource_type.value}, got "
                                                        f"{str(body.get('resourceType'))[:40]!r}")
                    bundles.append({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": body}]})
                    break
                if body.get("resourceType") != "Bundle" or not isinstance(body.get("entry", []), list):
                    raise _Gap(GapReason.MALFORMED, f"expected a Bundle, got {str(body.get('resourceType'))[:40]!r}")
                bundles.append(body)
                url, params = self._next_link(body), None
        except _Gap as exc:
            if query.on_failure is OnFailure.SUPPLEMENTARY and exc.reason in (
                    GapReason.REJECTED, GapReason.NOT_FOUND, GapReason.FORBIDDEN):
                # The server does not offer (or allow) this supplementary search: noted in provenance, not a gap.
                note = f"not supported by the server ({exc.detail})"
            else:
                gap = _gap_for(query, exc.reason, exc.detail)
        entries = sum(len(b.get("entry") or []) for b in bundles)
        elapsed = (time.monotonic() - started) * 1000
        report = QueryReport(query.resource_type, query.path, query.params, len(bundles), entries, elapsed, gap,
                             query.key, note)
        return report, bundles

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
        is_read: bool = False,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Gap(GapReason.BUDGET_EXCEEDED, "time budget used up")
            timeout = min(self.settings.request_timeout_s, remaining)
            try:
                status, headers, raw = await asyncio.wait_for(
                    self._download(http, url, params, timeout_s=timeout), timeout=remaining)
            except (httpx.TimeoutException, TimeoutError) as exc:
                raise _Gap(GapReason.TIMEOUT, f"no answer within {timeout:.1f} s") from exc
            except httpx.HTTPError as exc:
                raise _Gap(GapReason.NETWORK_ERROR, exc.__class__.__name__) from exc
            if status in (429, 503) and attempt < self.settings.max_retries:
                attempt += 1
                wait = min(_retry_after(headers.get("Retry-After")) or self.settings.backoff_s * 2 ** (attempt - 1),
                           max(0.0, deadline - time.monotonic() - 0.05))
                await asyncio.sleep(wait)
                continue
            if status == 401:
                raise _Gap(GapReason.UNAUTHORIZED, "HTTP 401")
            if status == 403:
                raise _Gap(GapReason.FORBIDDEN, "HTTP 403")
            if status in (404, 410) and is_read:
                raise _Gap(GapReason.NOT_FOUND, f"HTTP {status}")
            if status >= 400:
                reason = GapReason.SERVER_ERROR if status >= 500 or status == 429 else GapReason.REJECTED
                raise _Gap(reason, f"HTTP {status}")
            try:
                body = (await asyncio.to_thread(json.loads, raw) if len(raw) > _PARSE_OFF_LOOP_BYTES
                        else json.loads(raw))
            except (ValueError, RecursionError) as exc:
                raise _Gap(GapReason.MALFORMED, "response is not JSON") from exc
            if not isinstance(body, dict):
                raise _Gap(GapReason.MALFORMED, "response is not a JSON object")
            return body

    async def _download(self, http: httpx.AsyncClient, url: str, params: tuple[tuple[str, str], ...] | None,
                        *, timeout_s: float) -> tuple[int, httpx.Headers, bytes]:
        """The response body, read in chunks and refused past the per-response and per-fetch byte caps."""
        async with http.stream("GET", url, params=params, headers=self._headers(), timeout=timeout_s) as response:
            if response.status_code >= 300:
                return response.status_code, response.headers, b""
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.settings.max_response_bytes:
                raise _Gap(GapReason.TOO_LARGE, f"response over {self.settings.max_response_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                self._bytes_read += len(chunk)
                if size > self.settings.max_response_bytes:
                    raise _Gap(GapReason.TOO_LARGE, f"response over {self.settings.max_response_bytes} bytes")
                if self._bytes_read > self.settings.max_total_bytes:
                    raise _Gap(GapReason.TOO_LARGE,
                               f"the patient's data exceeds {self.settings.max_total_bytes} bytes in all")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return None if parsed is None else max(0.0, parsed.timestamp() - time.time())

"""Prometheus metrics (``GET /metrics``), fed by the audit events and one HTTP middleware.

Labels are closed vocabularies only: service ids, route templates, status codes, indicators, verdicts, resource
types, gap reasons, a fixed list of JWT refusal reasons. Never a patient, a user, an issuer or a free-text value.

With several worker processes, ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and every
worker's scrape reads all workers' files (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from eligibility import Verdict

_VERDICT_VALUES = frozenset(v.value for v in Verdict)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUESTS = Counter("ketamine_cds_http_requests_total", "HTTP requests by route and status", ["route", "status"])
LATENCY = Histogram("ketamine_cds_http_request_seconds", "HTTP request latency by route and status",
                    ["route", "status"], buckets=_LATENCY_BUCKETS)
SERVICE_CALLS = Counter("ketamine_cds_service_calls_total", "CDS service calls by service and status",
                        ["service", "status"])
CARDS = Counter("ketamine_cds_cards_total", "Cards returned by service and indicator", ["service", "indicator"])
VERDICTS = Counter("ketamine_cds_verdicts_total", "Assessments by service and verdict", ["service", "verdict"])
FHIR_FETCHES = Counter("ketamine_cds_fhir_fallback_queries_total",
                       "FHIR queries the service ran itself (what prefetch did not send), by service", ["service"])
DATA_GAPS = Counter("ketamine_cds_data_gaps_total", "Data that could not be obtained, by resource type and reason",
                    ["resource_type", "reason"])
JWT_REFUSALS = Counter("ketamine_cds_jwt_refusals_total", "CDS client JWTs refused, by reason", ["reason"])
FEEDBACK = Counter("ketamine_cds_feedback_total", "Feedback items by outcome", ["outcome"])
FEEDBACK_REFUSED = Counter("ketamine_cds_feedback_refused_total", "Feedback refused (card not issued to the caller)")
SMART_LAUNCHES = Counter("ketamine_cds_smart_launches_total", "SMART launches by result", ["result"])

#: The JWT refusal reasons (cds_hooks/auth.py); anything else (a reason quoting the token) is counted as "other".
_JWT_REASONS = frozenset({
    "no bearer token", "not a compact JWS", "no kid", "issuer not trusted", "unknown kid", "bad signature",
    "jti replayed", "issuer mismatch", "wrong audience", "jti is not a string", "jti cannot be stored",
    "lifetime too long", "expired",
    "issued in the future", "not yet valid", "tenant mismatch", "jwks unavailable", "missing iss", "missing aud",
    "missing exp", "missing iat", "missing jti"})
_SERVICES: frozenset[str] = frozenset()
_RESOURCE_TYPES: frozenset[str] = frozenset()
_GAP_REASONS: frozenset[str] = frozenset()
_KNOWN_OUTCOMES = frozenset({"accepted", "overridden"})


def configure(services: frozenset[str], resource_types: frozenset[str], gap_reasons: frozenset[str]) -> None:
    """The closed vocabularies of the labels (from the faces' own enums and tables)."""
    global _SERVICES, _RESOURCE_TYPES, _GAP_REASONS
    _SERVICES, _RESOURCE_TYPES, _GAP_REASONS = services, resource_types, gap_reasons


def _closed(value: Any, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


def observe_audit(event: str, fields: dict[str, Any]) -> None:
    """The metrics an audit event carries (registered with ``cds_hooks.audit.add_observer``)."""
    service = _closed(fields.get("service"), _SERVICES)
    if event == "service_call":
        SERVICE_CALLS.labels(service, str(fields.get("status", 200))).inc()
        for indicator in fields.get("indicators") or ():
            CARDS.labels(service, _closed(indicator, frozenset({"info", "warning", "critical"}))).inc()
        if fields.get("verdict"):
            VERDICTS.labels(service, _closed(fields["verdict"], _VERDICT_VALUES)).inc()
        if fields.get("fetched"):
            FHIR_FETCHES.labels(service).inc(int(fields["fetched"]))
        for gap in fields.get("data_gaps") or ():
            rtype, _, reason = str(gap).partition(":")
            DATA_GAPS.labels(_closed(rtype, _RESOURCE_TYPES), _closed(reason, _GAP_REASONS)).inc()
    elif event == "auth_rejected":
        JWT_REFUSALS.labels(_closed(fields.get("reason"), _JWT_REASONS)).inc()
    elif event == "feedback":
        for outcome in fields.get("outcomes") or ():
            FEEDBACK.labels(_closed(outcome, _KNOWN_OUTCOMES)).inc()
    elif event == "feedback_refused":
        FEEDBACK_REFUSED.inc()


def smart_launch(result: str) -> None:
    SMART_LAUNCHES.labels(result).inc()


def _route(request: Request) -> str:
    """The route template ('/cds-services/{service_id}' with a known id filled in), never the raw path."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    service = request.path_params.get("service_id")
    if isinstance(service, str):
        template = template.replace("{service_id}", _closed(service, _SERVICES))
    return template


async def http_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count and time every request (the middleware of the app factory)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = _route(request)
    if route != "/metrics":
        status = str(response.status_code)
        REQUESTS.labels(route, status).inc()
        LATENCY.labels(route, status).observe(time.perf_counter() - started)
    return response


def metrics_response() -> Response:
    """The Prometheus text exposition: this process's registry, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, media_type=CONTENT_TYPE_LATEST)

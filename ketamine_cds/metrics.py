"""Prometheus metrics (``GET /metrics``), fed by the audit events and one HTTP middleware.

Labels are closed vocabularies only: service ids, route templates, status codes, and the values of the enums that
define the rest (``Indicator``, ``Verdict``, ``ResourceType``, ``GapReason``, ``JwtRefusal``, ``FeedbackOutcome``,
``LaunchOutcome``: ``LABEL_VALUES``). Never a patient, a user, an issuer or a free-text value.

With several worker processes, ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and every
worker's scrape reads all workers' files (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
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

from cds_hooks import SERVICES, AuditEvent, JwtRefusal
from cds_hooks.models import FeedbackOutcome, Indicator
from eligibility import Verdict
from fhir_mapping import GapReason, ResourceType
from smart_app import LaunchOutcome

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


def _values(vocabulary: Iterable[StrEnum]) -> frozenset[str]:
    return frozenset(member.value for member in vocabulary)


#: The values each closed label may take, from the enums and the catalogue that define them (never typed again
#: here); anything else is counted as "other".
LABEL_VALUES: dict[str, frozenset[str]] = {
    "service": frozenset(SERVICES),
    "indicator": _values(Indicator),
    "verdict": _values(Verdict),
    "resource_type": _values(ResourceType),
    "reason": _values(GapReason),
    "jwt_refusal": _values(JwtRefusal),
    "outcome": _values(FeedbackOutcome),
    "launch_result": _values(LaunchOutcome),
}


def _closed(value: Any, label: str) -> str:
    return value if isinstance(value, str) and value in LABEL_VALUES[label] else "other"


def _service_call(service: str, fields: dict[str, Any]) -> None:
    SERVICE_CALLS.labels(service, str(fields.get("status", 200))).inc()
    for indicator in fields.get("indicators") or ():
        CARDS.labels(service, _closed(indicator, "indicator")).inc()
    if fields.get("verdict"):
        VERDICTS.labels(service, _closed(fields["verdict"], "verdict")).inc()
    if fields.get("fetched"):
        FHIR_FETCHES.labels(service).inc(int(fields["fetched"]))
    for gap in fields.get("data_gaps") or ():
        DATA_GAPS.labels(_closed(gap.get("resource_type"), "resource_type"), _closed(gap.get("reason"), "reason")).inc()


def observe_audit(event: AuditEvent, fields: dict[str, Any]) -> None:
    """The metrics an audit event carries (registered with ``cds_hooks.audit.add_observer``)."""
    if event is AuditEvent.SERVICE_CALL:
        _service_call(_closed(fields.get("service"), "service"), fields)
    elif event is AuditEvent.AUTH_REJECTED:
        JWT_REFUSALS.labels(_closed(fields.get("refusal"), "jwt_refusal")).inc()
    elif event is AuditEvent.FEEDBACK:
        for outcome in fields.get("outcomes") or ():
            FEEDBACK.labels(_closed(outcome, "outcome")).inc()
    elif event is AuditEvent.FEEDBACK_REFUSED:
        FEEDBACK_REFUSED.inc()


def smart_launch(result: LaunchOutcome) -> None:
    """A SMART launch's outcome (``SmartOptions.on_launch``)."""
    SMART_LAUNCHES.labels(_closed(result, "launch_result")).inc()


def _route(request: Request) -> str:
    """The route template ('/cds-services/{service_id}' with a known id filled in), never the raw path."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    service = request.path_params.get("service_id")
    if isinstance(service, str):
        template = template.replace("{service_id}", _closed(service, "service"))
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

"""Health endpoints for load balancers and orchestrators.

- ``GET /healthz``: 200 while the process serves requests (liveness; no dependency is checked).
- ``GET /readyz``: 200 when this replica's own dependency, the database, answers; 503 with an OperationOutcome
  saying so otherwise (a replica that cannot store should get no traffic), checked again on every call, so readiness
  returns by itself. An EHR's keys are not this replica's dependency: a JWKS that cannot be fetched takes every
  replica out alike and would leave the other EHRs with no service at all, and the list of trusted issuers is not for
  anonymous callers (``check-config``, the service's log and ``jwt_refusals_total{reason="jwks unavailable"}`` say
  which client's keys are missing). Nothing here calls out of the replica.
- ``GET /metrics``: the Prometheus text format (see ``metrics.py``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from cds_hooks import IssueType
from cds_hooks.errors import operation_outcome
from storage import Storage, StorageUnavailable

from .metrics import metrics_response


def build_health_router(storage: Storage) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            await storage.ping()
        except StorageUnavailable:
            return JSONResponse(operation_outcome(IssueType.TRANSIENT, "database: did not answer"), status_code=503,
                                media_type="application/fhir+json",
                                headers={"Cache-Control": "no-store", "Retry-After": "5"})
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return metrics_response()

    return router

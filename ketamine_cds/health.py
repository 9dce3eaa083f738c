"""Health endpoints for load balancers and orchestrators.

- ``GET /healthz``: 200 while the process serves requests (liveness; no dependency is checked).
- ``GET /readyz``: 200 when the database answers and every trusted client's keys are loaded; 503 with an
  OperationOutcome naming what is not ready (a replica that cannot store or verify should get no traffic). Each
  check runs again on every call, so readiness returns by itself once the cause is fixed.
- ``GET /metrics``: the Prometheus text format (see ``metrics.py``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from cds_hooks import JwtVerifier
from cds_hooks.errors import operation_outcome
from storage import Storage, StorageUnavailable

from .metrics import metrics_response


def build_health_router(storage: Storage, verifier: JwtVerifier | None) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = []
        try:
            await storage.ping()
        except StorageUnavailable:
            problems.append("database: did not answer")
        if verifier is not None:
            problems.extend(f"keys not loaded: {problem}" for problem in sorted(await verifier.key_problems()))
        if problems:
            return JSONResponse(operation_outcome("transient", "; ".join(problems)), status_code=503,
                                media_type="application/fhir+json",
                                headers={"Cache-Control": "no-store", "Retry-After": "5"})
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return metrics_response()

    return router

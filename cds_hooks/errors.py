"""The service's error tree, and its translation at the edge: every 4xx this service sends is an OperationOutcome.

    CdsError                      anything the caller did that we refuse
    ├── Unauthorized              the JWT failed a check (401, no detail; the reason goes to the audit log)
    ├── BadRequest                body, Content-Type, size, JSON, model or context (400/413/415)
    ├── UnknownService            no such service (404)
    ├── UnknownCard               feedback for a card not issued by this service to this client (400)
    ├── RequiredDataMissing       Patient or Conditions unobtainable, or the patient unknown (412)
    └── ServiceUnavailable        the shared-state database did not answer in time (503, Retry-After)

Routes raise; :func:`error_response` (installed once on the app) answers.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


def operation_outcome(code: str, diagnostics: str | None = None, severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, code: str, diagnostics: str | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(code, diagnostics), status_code=status, media_type=FHIR_JSON,
                        headers=headers)


class CdsError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str = "") -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics

    def audit_fields(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.diagnostics[:200]}


class Unauthorized(CdsError):
    status, code = 401, "login"

    def __init__(self, reason: str) -> None:
        super().__init__("")
        self.reason = reason

    def audit_fields(self) -> dict[str, Any]:
        return {"reason": self.reason}


class BadRequest(CdsError):
    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status, self.code = status, code


class UnknownService(CdsError):
    status, code = 404, "not-found"


class UnknownCard(CdsError):
    status, code = 400, "not-found"

    def __init__(self, card_uuid: str) -> None:
        super().__init__("feedback names a card this service did not issue to you")
        self.card_uuid = card_uuid


class RequiredDataMissing(CdsError):
    status, code = 412, "processing"


class ServiceUnavailable(CdsError):
    """Shared state (the database) did not answer in time: retry shortly."""

    status, code = 503, "transient"


def error_response(exc: CdsError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return unauthorized()
    if isinstance(exc, ServiceUnavailable):
        return outcome_response(exc.status, exc.code, exc.diagnostics or None, headers={"Retry-After": "5"})
    return outcome_response(exc.status, exc.code, exc.diagnostics or None)


def unauthorized() -> JSONResponse:
    """401 with no detail: a failed JWT check never tells the caller which check failed."""
    return outcome_response(401, "login", headers={"WWW-Authenticate": "Bearer"})

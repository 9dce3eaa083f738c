"""Errors as OperationOutcome bodies: every 4xx this service sends explains itself in FHIR terms."""

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


def unauthorized() -> JSONResponse:
    """401 with no detail: a failed JWT check never tells the caller which check failed."""
    return outcome_response(401, "login", headers={"WWW-Authenticate": "Bearer"})

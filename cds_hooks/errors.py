"""The service's error tree, and its translation at the edge: every 4xx this service sends is an OperationOutcome.

    CdsError                      anything the caller did that we refuse
    ├── Unauthorized              the JWT failed a check (401, no detail; the reason goes to the audit log)
    ├── BadRequest                body, JSON, model or context (400)
    ├── PayloadTooLarge           the body is over ``max_body_bytes`` (413)
    ├── UnsupportedMediaType      the body is not JSON by its Content-Type (415)
    ├── UnknownService            no such service (404)
    ├── UnknownCard               feedback for a card not issued by this service to this client (400)
    ├── RequiredDataMissing       Patient or Conditions unobtainable, or the patient unknown (412)
    └── ServiceUnavailable        the shared-state database did not answer in time (503, Retry-After)

Each error has one HTTP status and one FHIR issue code (``IssueType``); only :class:`BadRequest` says which 400 it
is. Routes raise; :func:`error_response` (installed once on the app) answers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from .auth import JwtRefusal

FHIR_JSON = "application/fhir+json"


class IssueSeverity(StrEnum):
    """FHIR R4 IssueSeverity (http://hl7.org/fhir/issue-severity): the ones this service sends."""

    ERROR = "error"


class IssueType(StrEnum):
    """FHIR R4 IssueType (http://hl7.org/fhir/issue-type): the codes of the OperationOutcomes this service sends."""

    INVALID = "invalid"
    STRUCTURE = "structure"
    REQUIRED = "required"
    LOGIN = "login"
    FORBIDDEN = "forbidden"
    PROCESSING = "processing"
    NOT_SUPPORTED = "not-supported"
    NOT_FOUND = "not-found"
    TOO_COSTLY = "too-costly"
    TRANSIENT = "transient"
    EXCEPTION = "exception"


def operation_outcome(code: IssueType, diagnostics: str | None = None,
                      severity: IssueSeverity = IssueSeverity.ERROR) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity.value, "code": code.value}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, code: IssueType, diagnostics: str | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(code, diagnostics), status_code=status, media_type=FHIR_JSON,
                        headers=headers)


class CdsError(Exception):
    status: int = 400
    code: IssueType = IssueType.INVALID

    def __init__(self, diagnostics: str = "") -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics

    def audit_fields(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.diagnostics[:200]}


class Unauthorized(CdsError):
    status, code = 401, IssueType.LOGIN

    def __init__(self, refusal: JwtRefusal, reason: str) -> None:
        super().__init__("")
        self.refusal, self.reason = refusal, reason

    def audit_fields(self) -> dict[str, Any]:
        # ``reason`` as the verifier wrote it (it may quote the token's header); ``refusal`` the closed code of it.
        return {"reason": self.reason, "refusal": self.refusal}


class BadRequest(CdsError):
    def __init__(self, code: IssueType, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.code = code


class PayloadTooLarge(CdsError):
    status, code = 413, IssueType.TOO_COSTLY


class UnsupportedMediaType(CdsError):
    status, code = 415, IssueType.NOT_SUPPORTED


class UnknownService(CdsError):
    status, code = 404, IssueType.NOT_FOUND


class UnknownCard(CdsError):
    status, code = 400, IssueType.NOT_FOUND

    def __init__(self, card_uuid: str) -> None:
        super().__init__("feedback names a card this service did not issue to you")
        self.card_uuid = card_uuid


class RequiredDataMissing(CdsError):
    status, code = 412, IssueType.PROCESSING


class ServiceUnavailable(CdsError):
    """Shared state (the database) did not answer in time: retry shortly."""

    status, code = 503, IssueType.TRANSIENT


def error_response(exc: CdsError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return unauthorized()
    if isinstance(exc, ServiceUnavailable):
        return outcome_response(exc.status, exc.code, exc.diagnostics or None, headers={"Retry-After": "5"})
    return outcome_response(exc.status, exc.code, exc.diagnostics or None)


def unauthorized() -> JSONResponse:
    """401 with no detail: a failed JWT check never tells the caller which check failed."""
    return outcome_response(401, IssueType.LOGIN, headers={"WWW-Authenticate": "Bearer"})

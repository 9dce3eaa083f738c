"""SEKMET behind the sandbox's access-token check: a SMART app needs a token the sandbox issued, whose scopes cover
the resource type it reads, for the patient it was launched with."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from .asgi import ASGIApp, Receive, Scope, Send, buffered_response, send_response
from .auth_server import IssuedToken, SandboxAuthServer

_OPEN = ("/fhir/metadata",)
_SCOPE = re.compile(r"^(patient|user)/(\*|[A-Za-z]+)\.(read|\*|c?r?u?d?s?)(\?.*)?$")


def scope_allows(scopes: str, resource_type: str) -> bool:
    """Whether granted SMART scopes (v1 or v2) allow reading or searching ``resource_type``."""
    for scope in scopes.split():
        m = _SCOPE.match(scope)
        if not m:
            continue
        _, rtype, perms, _ = m.groups()
        if rtype not in ("*", resource_type):
            continue
        if perms in ("read", "*") or "r" in perms or "s" in perms:
            return True
    return False


async def _outcome(send: Send, status: int, code: str, text: str) -> None:
    body = json.dumps({"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": code, "diagnostics": text}]}).encode()
    headers = [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _compartment_patient(token: IssuedToken) -> str | None:
    """The patient whose compartment the token is limited to; None for user-level access (every chart)."""
    if not any(s.startswith("patient/") for s in token.scope.split()):
        return None
    return token.context.patient or ""


def _search_ok(patient: str, rtype: str, parts: list[str], query: dict[str, list[str]]) -> bool:
    """A search (not a read by id) stays in the patient's compartment."""
    if rtype == "Patient":
        return False  # the Patient is read by id
    values = query.get("patient", []) + query.get("subject", [])
    return bool(values) and all(v.removeprefix("Patient/") == patient for v in values)


# Resources shared by every patient's records (referenced, not in a compartment): readable by id.
_SHARED = {"Medication", "Questionnaire", "Practitioner", "Organization", "Location"}


def _in_compartment(resource: Any, patient: str) -> bool:
    """Whether a resource read by id (or every entry of a history Bundle) belongs to the patient."""
    if not isinstance(resource, dict):
        return False
    if resource.get("resourceType") == "Bundle":
        return all(_in_compartment(e.get("resource"), patient) for e in resource.get("entry") or []
                   if isinstance(e, dict) and e.get("resource") is not None)
    rtype = resource.get("resourceType")
    if rtype in _SHARED:
        return True
    if rtype == "Patient":
        return resource.get("id") == patient
    for field in ("subject", "patient"):
        ref = resource.get(field)
        if isinstance(ref, dict) and str(ref.get("reference", "")).removeprefix("Patient/") == patient:
            return True
    return False


class FhirGate:
    def __init__(self, app: ASGIApp, auth: SandboxAuthServer) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under a mount, Starlette keeps the full path and records the prefix in root_path.
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not (path == "/fhir" or path.startswith("/fhir/")):
            # Only the FHIR API is exposed: the embedded server's own UI, simulator and admin stay unreachable.
            await _outcome(send, 404, "not-found", "not found")
            return
        if path.startswith(_OPEN):
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        token = self.auth.bearer(headers.get("authorization"))
        if token is None:
            await _outcome(send, 401, "login", "a valid access token is required")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _outcome(send, 403, "forbidden", "the sandbox FHIR server is read-only for apps")
            return
        parts = [p for p in path.removeprefix("/fhir/").split("/") if p]
        rtype = parts[0] if parts else ""
        if not scope_allows(token.scope, rtype):
            await _outcome(send, 403, "forbidden", f"the granted scopes do not cover {rtype}")
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        patient = _compartment_patient(token)
        if patient is None:
            await self.app(scope, receive, send)  # user-level access: the sandbox clinician sees every chart
            return
        if len(parts) == 1 and not _search_ok(patient, rtype, parts, query):
            await _outcome(send, 403, "forbidden", "outside the launched patient's compartment")
            return
        if len(parts) == 1:
            await self.app(scope, receive, send)
            return
        await self._checked_read(scope, receive, send, patient)

    async def _checked_read(self, scope: Scope, receive: Receive, send: Send, patient: str) -> None:
        """A read by id or a history: answered only when what comes back is in the patient's compartment."""
        status, headers, body = await buffered_response(self.app, scope, receive)
        if status == 200:
            try:
                allowed = _in_compartment(json.loads(body), patient)
            except ValueError:
                allowed = False
            if not allowed:
                await _outcome(send, 403, "forbidden", "outside the launched patient's compartment")
                return
        await send_response(send, status, headers, body)

"""SEKMET behind the sandbox's access-token check: a SMART app needs a token the sandbox issued, whose scopes cover
the resource type it reads, for the patient it was launched with."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from .auth_server import IssuedToken, SandboxAuthServer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def _patient_ok(token: IssuedToken, rtype: str, parts: list[str], query: dict[str, list[str]]) -> bool:
    patient = token.context.patient
    if not any(s.startswith("patient/") for s in token.scope.split()) or patient is None:
        return True  # user-level access: the sandbox clinician sees every chart
    if rtype == "Patient":
        return len(parts) > 1 and parts[1] == patient
    if len(parts) > 1:
        return True  # a read by id of a resource type the scope covers
    values = query.get("patient", []) + query.get("subject", [])
    return bool(values) and all(v.removeprefix("Patient/") == patient for v in values)


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
        if scope["type"] != "http" or not (path == "/fhir" or path.startswith("/fhir/")) or path.startswith(_OPEN):
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
        if not _patient_ok(token, rtype, parts, query):
            await _outcome(send, 403, "forbidden", "outside the launched patient's compartment")
            return
        await self.app(scope, receive, send)

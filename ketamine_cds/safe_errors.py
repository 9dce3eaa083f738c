"""The last line of defence: an unexpected exception becomes a 500 OperationOutcome with a correlation id, and the
log gets the exception's type, the route and that id only.

Exception messages and tracebacks can hold PHI (a patient id in a KeyError, a chart value in a ValueError), so they
are never logged nor sent. A plain ASGI middleware rather than an exception handler: Starlette re-raises after its
handler for server errors, and the server would then print the traceback.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_hooks import IssueType, LogEvent
from cds_hooks.errors import operation_outcome

log = logging.getLogger("ketamine_cds")


class SafeErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the boundary that turns any failure into a safe 500
            correlation = secrets.token_hex(8)
            log.error(json.dumps({"event": LogEvent.INTERNAL_ERROR, "type": exc.__class__.__name__,
                                  "route": _route(scope), "method": scope.get("method"),
                                  "correlation_id": correlation}))
            if started:
                return  # the response is under way: nothing more can be said to the caller
            body = json.dumps(operation_outcome(IssueType.EXCEPTION,
                                                f"internal error (correlation id {correlation})")).encode()
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode()),
                (b"x-correlation-id", correlation.encode())]})
            await send({"type": "http.response.body", "body": body})


def _route(scope: Scope) -> str:
    """The route's template (``/cds-services/{service_id}``), never the concrete path (it may carry ids)."""
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = str(scope.get("path", ""))
    return "/" + path.strip("/").split("/", 1)[0] if path else ""

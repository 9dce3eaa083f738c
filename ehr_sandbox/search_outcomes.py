"""What a fixture's searchset said about its own search, served again by the sandbox's FHIR server.

A fixture may be a searchset whose OperationOutcome entry (``search.mode`` "outcome") says some results were
withheld (fixture 53, issue #20). Loaded into SEKMET, its resources come back from every search complete, and the
outcome is lost: the demo would call that chart a candidate where ``evaluate`` on the file says "needs work-up".
So the sandbox keeps the outcome and adds it to each of that patient's searches of the types the Bundle holds (the
types ``fhir_mapping.loading`` makes a gap when it reads the file), on every path a face reads by: the CDS client's
prefetch, the FHIR API behind the token gate (the SMART app, the CDS service's own fetches). One chart, one answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fhir_mapping.facts import ResourceType
from fhir_mapping.searches import SEARCHED_TYPES

from .asgi import ASGIApp, Receive, Scope, Send, buffered_response, send_response


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """A searchset's own OperationOutcome and the resource types of the searches it speaks for."""

    outcome: dict[str, Any]
    types: frozenset[str]


def search_outcome_of(bundle: Mapping[str, Any]) -> SearchOutcome | None:
    """The outcome entry of a searchset fixture, with the types it holds (the Patient is read, not searched: an
    outcome of a search says nothing of it); every searched type when it holds none, as the file is read."""
    if bundle.get("type") != "searchset":
        return None
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, Mapping)]
    outcome = next((e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "outcome"
                    and isinstance(e.get("resource"), Mapping)
                    and e["resource"].get("resourceType") == "OperationOutcome"), None)
    if outcome is None:
        return None
    held = {e["resource"].get("resourceType") for e in entries if isinstance(e.get("resource"), Mapping)}
    searched = [t.value for t in SEARCHED_TYPES if t is not ResourceType.PATIENT]
    types = frozenset(t for t in searched if t in held) or frozenset(searched)
    return SearchOutcome(dict(outcome), types)


def is_chart_data(entry: Mapping[str, Any]) -> bool:
    """Whether a fixture entry is a record of the chart (loaded into the server), not its search's outcome."""
    return (entry.get("search") or {}).get("mode") != "outcome"


class SearchOutcomes:
    """ASGI middleware in front of SEKMET: a searchset answering a search (``GET /fhir/{type}?patient=…``) of a
    patient whose fixture carried an outcome, for a type that fixture holds, gets that outcome entry back."""

    def __init__(self, app: ASGIApp, outcomes: Mapping[str, SearchOutcome]) -> None:
        self.app = app
        #: By patient id; the sandbox fills it when it loads the fixtures.
        self.outcomes = outcomes

    def _outcome_for(self, scope: Scope) -> SearchOutcome | None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not self.outcomes:
            return None
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        parts = [p for p in path.removeprefix("/fhir/").split("/") if p]
        if not path.startswith("/fhir/") or len(parts) != 1:
            return None  # a read by id, a history, an operation: not a search
        query = parse_qs(scope.get("query_string", b"").decode())
        patients = {v.removeprefix("Patient/") for v in query.get("patient", []) + query.get("subject", [])}
        if len(patients) != 1:
            return None
        found = self.outcomes.get(patients.pop())
        return found if found is not None and parts[0] in found.types else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._outcome_for(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = await buffered_response(self.app, scope, receive)
        if status == 200:
            body = _with_outcome(body, found.outcome)
        await send_response(send, status, headers, body)


def _with_outcome(body: bytes, outcome: dict[str, Any]) -> bytes:
    try:
        bundle = json.loads(body)
    except ValueError:
        return body
    if not isinstance(bundle, dict) or bundle.get("type") != "searchset":
        return body
    entries = [*(bundle.get("entry") or []), {"search": {"mode": "outcome"}, "resource": outcome}]
    return json.dumps({**bundle, "entry": entries}).encode()

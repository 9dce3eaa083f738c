"""The steps every service's answer shares: the call's audit fields, fetch what prefetch did not send, refuse (412)
without the patient, record the issued cards, write the audit line, send the cards. Below the services
(``orders.py``, ``sessions.py``), which use them; it imports none of them."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, Response

from fhir_mapping import SEARCHES, ClientSettings, DataGap, Search
from storage import IssuedCard

from .audit import AuditEvent, audit, patient_hash
from .errors import RequiredDataMissing
from .markdown import markdown_text
from .models import Card, CardKind, CdsRequest, Indicator, Source
from .prefetch import PatientData, gather_patient_data

if TYPE_CHECKING:
    from .auth import VerifiedCaller
    from .definitions import CdsOptions, ServiceDefinition


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def call_log(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
             caller: VerifiedCaller | None) -> dict[str, Any]:
    """The fields every audit line of this call carries (the patient only as a salted hash)."""
    return {
        "service": service.id, "hookInstance": req.hookInstance, "issuer": caller.issuer if caller else None,
        "tenant": caller.tenant if caller else None,
        "patient": patient_hash(str(req.context["patientId"]), options.audit_salt),
    }


def client_settings(options: CdsOptions) -> ClientSettings:
    """The FHIR client's limits for one call: the service's budget and byte caps."""
    return ClientSettings(budget_s=options.fhir_budget_s, request_timeout_s=options.fhir_budget_s,
                          max_response_bytes=options.fhir_max_response_bytes,
                          max_total_bytes=options.fhir_max_total_bytes)


async def fetch_data(options: CdsOptions, req: CdsRequest, patient_id: str, searches: Sequence[Search] = SEARCHES,
                     today: dt.date | None = None) -> PatientData:
    """The request's prefetch, and the rest from its FHIR server within the budget and byte caps."""
    token = req.fhirAuthorization.access_token if req.fhirAuthorization else None
    encounter = req.context.get("encounterId")
    return await gather_patient_data(
        patient_id, req.prefetch, req.fhirServer, token, options.fhir_budget_s, options.http, client_settings(options),
        searches=searches, encounter_id=encounter if isinstance(encounter, str) else None, today=today)


def audited_gaps(gaps: Sequence[DataGap]) -> list[dict[str, str]]:
    """The data gaps as the audit line (and the metrics it feeds) carry them: each one's resource type and reason,
    as fields, never a message (which may name a record)."""
    return [{"resource_type": g.resource_type, "reason": g.reason} for g in gaps]


def require_patient(data: PatientData, patient_id: str, log: dict[str, Any], started: float) -> list[dict[str, str]]:
    """The data gaps (for the audit line); raises RequiredDataMissing (412) when the required data or the patient
    could not be obtained: a patient who cannot be read is never assessed."""
    gaps = audited_gaps(data.pool.gaps)
    missing = data.missing_required()
    if not missing and not data.patient_found(patient_id):
        missing = ["Patient"]
    if missing:
        audit(AuditEvent.SERVICE_CALL, **log, status=412, data_gaps=gaps, latency_ms=elapsed_ms(started))
        raise RequiredDataMissing(f"required data could not be obtained: {', '.join(missing)} "
                                  "(send it as prefetch or give fhirServer and fhirAuthorization)")
    return gaps


_RANK = {Indicator.CRITICAL: 0, Indicator.WARNING: 1, Indicator.INFO: 2}


def capped(cards: list[Card], limit: int) -> list[Card]:
    """At most ``limit`` cards: over it, the most urgent ``limit - 1`` (critical first, in their order) and one card
    that says what was left out, so that an answer stays bounded however many appointments or findings there are."""
    if len(cards) <= limit:
        return cards
    ranked = sorted(cards, key=lambda c: _RANK[c.indicator])
    kept, dropped = ranked[:limit - 1], ranked[limit - 1:]
    counts = Counter(c.summary for c in dropped)
    lines = [f"- {n} x {markdown_text(summary, 140)}" for summary, n in counts.most_common(10)]
    if len(counts) > 10:
        lines.append(f"- and {len(counts) - 10} other kinds of card")
    worst = min((c.indicator for c in dropped), key=lambda i: _RANK[i])
    return [*kept, Card(
        kind=CardKind.CARDS_LEFT_OUT, uuid=str(uuid.uuid4()),
        summary=f"{len(dropped)} more cards left out (at most {limit} per answer)",
        detail="\n".join([f"This answer is limited to {limit} cards; the least urgent {len(dropped)} were left out:",
                          "", *lines]),
        indicator=Indicator.INFO if worst is Indicator.INFO else Indicator.WARNING,
        source=Source(label="ketamine-cds (answer size limit)"))]


async def send_cards(options: CdsOptions, service: ServiceDefinition, req: CdsRequest, caller: VerifiedCaller | None,
                     cards: list[Card], log: dict[str, Any], started: float, **audit_fields: Any) -> Response:
    """Record the cards as issued (feedback is accepted only for them), audit the call, answer (at most
    ``options.max_cards`` cards)."""
    cards = capped(cards, options.max_cards)
    await options.storage.record_cards([
        IssuedCard(c.uuid, service.id, req.hookInstance, c.kind, c.indicator,
                   tuple(s.uuid for s in c.suggestions or []), caller.issuer if caller else None)
        for c in cards])
    audit(AuditEvent.SERVICE_CALL, **log, status=200, cards=len(cards), indicators=[c.indicator.value for c in cards],
          **audit_fields, latency_ms=elapsed_ms(started))
    return JSONResponse({"cards": [c.model_dump(exclude_none=True) for c in cards]})


def no_cards(log: dict[str, Any], started: float) -> Response:
    """An order or booking that is not for ketamine or esketamine: nothing fetched, nothing to say."""
    audit(AuditEvent.SERVICE_CALL, **log, status=200, verdict=None, cards=0, data_gaps=[],
          latency_ms=elapsed_ms(started))
    return JSONResponse({"cards": []})

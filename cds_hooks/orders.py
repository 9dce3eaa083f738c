"""The order services: ``ketamine-order-select``, ``ketamine-order-sign`` (order-select, order-sign) and
``ketamine-patient-view`` (patient-view). The same steps as every service (``answering.py``); the assessment at
order time as cards (``cards.py``), and order-sign leaves out what order-select has just shown. A peer of
``sessions.py``: neither imports the other, and the router dispatches to both."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response

from eligibility import assess_pool
from fhir_mapping import KetamineOrder, ketamine_order

from .answering import fetch_data, no_cards, require_patient, send_cards
from .cards import CardContext, order_cards, patient_view_card
from .models import Card, CdsRequest, Hook, Indicator

if TYPE_CHECKING:
    from .auth import VerifiedCaller
    from .definitions import CdsOptions, ServiceDefinition


def _ketamine_orders(req: CdsRequest) -> list[KetamineOrder]:
    entries = req.context["draftOrders"].get("entry") or []
    resources: list[dict[str, Any]] = [
        e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    if req.hook == Hook.ORDER_SELECT:
        selected = {str(s) for s in req.context.get("selections") or []}
        resources = [r for r in resources if f"{r.get('resourceType')}/{r.get('id')}" in selected]
    return [o for r in resources if (o := ketamine_order(r)) is not None]


def _card_digest(caller: VerifiedCaller | None, ctx: CardContext, card: Card) -> str:
    """Who was shown what, for which draft orders: the same card for the same orders hashes the same (its uuid,
    links and suggestion ids, fresh on every call, are left out)."""
    content = json.dumps({
        "issuer": caller.issuer if caller else None, "tenant": caller.tenant if caller else None,
        "patient": ctx.patient_id, "orders": sorted(o.reference for o in ctx.orders), "kind": card.kind,
        "indicator": card.indicator, "summary": card.summary, "detail": card.detail,
    }, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


async def _without_repeats(options: CdsOptions, service: ServiceDefinition, caller: VerifiedCaller | None,
                           ctx: CardContext, cards: list[Card]) -> tuple[list[Card], int]:
    """order-select remembers what it showed; order-sign leaves out those cards when unchanged, except critical
    ones (a contraindication is shown again at the moment of signing, whatever was shown before)."""
    if options.repeat_window_s <= 0 or service.hook is Hook.PATIENT_VIEW or not cards:
        return cards, 0
    digests = {card.uuid: _card_digest(caller, ctx, card) for card in cards}
    if service.hook is Hook.ORDER_SELECT:
        await options.storage.remember_shown(digests.values(), options.repeat_window_s)
        return cards, 0
    shown = await options.storage.recently_shown(
        d for c in cards if c.indicator is not Indicator.CRITICAL for d in (digests[c.uuid],))
    kept = [c for c in cards if digests[c.uuid] not in shown]
    return kept, len(cards) - len(kept)


async def answer_order(options: CdsOptions, service: ServiceDefinition, req: CdsRequest,
                       caller: VerifiedCaller | None, started: float, log: dict[str, Any]) -> Response:
    """order-select, order-sign and patient-view: the assessment as cards (nothing fetched for an order that is not
    for ketamine or esketamine)."""
    patient_id = str(req.context["patientId"])
    orders: list[KetamineOrder] = []
    if service.hook is not Hook.PATIENT_VIEW:
        orders = _ketamine_orders(req)
        if not orders:
            return no_cards(log, started)
    data = await fetch_data(options, req, patient_id)
    gaps = require_patient(data, patient_id, log, started)
    as_of = options.today()
    assessment, _ = assess_pool(data.pool, options.policy, as_of, patient_id)
    ctx = CardContext(
        hook_instance=req.hookInstance, patient_id=patient_id, user_id=req.context.get("userId"),
        encounter_id=req.context.get("encounterId"), orders=tuple(orders),
        smart_launch_url=options.smart_launch_url,
    )
    if service.hook is Hook.PATIENT_VIEW:
        card = patient_view_card(assessment, options.policy, ctx)
        cards = [card] if card else []
    else:
        cards = order_cards(assessment, options.policy, ctx)
    cards, repeated = await _without_repeats(options, service, caller, ctx, cards)
    return await send_cards(options, service, req, caller, cards, log, started, verdict=assessment.verdict.value,
                            cards_not_repeated=repeated, data_gaps=gaps, fetched=len(data.queries))

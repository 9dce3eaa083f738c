"""The metrics' labels are the closed vocabularies of the code, not copies of them: every value an enum can take is
counted under its own label, and anything else as "other"."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from cds_hooks import SERVICES, AuditEvent, JwtRefusal
from cds_hooks.models import FeedbackOutcome, Indicator
from eligibility import Verdict
from fhir_mapping import GapReason, ResourceType
from ketamine_cds.metrics import LABEL_VALUES, observe_audit, smart_launch
from smart_app import LaunchOutcome

SERVICE = "ketamine-order-sign"


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_label_sets_are_the_enums_values() -> None:
    vocabularies = {
        "service": set(SERVICES),
        "indicator": {i.value for i in Indicator},
        "verdict": {v.value for v in Verdict},
        "resource_type": {t.value for t in ResourceType},
        "reason": {r.value for r in GapReason},
        "jwt_refusal": {r.value for r in JwtRefusal},
        "outcome": {o.value for o in FeedbackOutcome},
        "launch_result": {o.value for o in LaunchOutcome},
    }
    assert vocabularies == LABEL_VALUES


def _observed(event: AuditEvent, fields: dict[str, Any], name: str, **labels: str) -> float:
    before = _count(name, **labels)
    observe_audit(event, fields)
    return _count(name, **labels) - before


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_is_counted_under_its_own_label(verdict: Verdict) -> None:
    assert _observed(AuditEvent.SERVICE_CALL, {"service": SERVICE, "verdict": verdict}, "ketamine_cds_verdicts_total",
                     service=SERVICE, verdict=verdict.value) == 1


@pytest.mark.parametrize("indicator", list(Indicator))
def test_every_indicator_is_counted_under_its_own_label(indicator: Indicator) -> None:
    assert _observed(AuditEvent.SERVICE_CALL, {"service": SERVICE, "indicators": [indicator.value] * 2},
                     "ketamine_cds_cards_total", service=SERVICE, indicator=indicator.value) == 2


@pytest.mark.parametrize("reason", list(GapReason))
@pytest.mark.parametrize("rtype", [ResourceType.OBSERVATION, ResourceType.MEDICATION])
def test_every_gap_is_counted_by_its_resource_type_and_reason(rtype: ResourceType, reason: GapReason) -> None:
    # The audit line carries gaps as fields (answering.audited_gaps), never as "type:reason" to split again.
    assert _observed(AuditEvent.SERVICE_CALL,
                     {"service": SERVICE, "data_gaps": [{"resource_type": rtype, "reason": reason}]},
                     "ketamine_cds_data_gaps_total", resource_type=rtype.value, reason=reason.value) == 1


@pytest.mark.parametrize("refusal", list(JwtRefusal))
def test_every_jwt_refusal_is_counted_under_its_own_label(refusal: JwtRefusal) -> None:
    # The reason may quote the token ("algorithm 'HS256' not allowed"): the label is the refusal, never the quote.
    assert _observed(AuditEvent.AUTH_REJECTED, {"reason": f"{refusal.value} (quoting the token)", "refusal": refusal},
                     "ketamine_cds_jwt_refusals_total", reason=refusal.value) == 1


@pytest.mark.parametrize("outcome", list(FeedbackOutcome))
def test_every_feedback_outcome_is_counted_under_its_own_label(outcome: FeedbackOutcome) -> None:
    assert _observed(AuditEvent.FEEDBACK, {"service": SERVICE, "outcomes": [outcome]}, "ketamine_cds_feedback_total",
                     outcome=outcome.value) == 1


@pytest.mark.parametrize("outcome", list(LaunchOutcome))
def test_every_launch_outcome_is_counted_under_its_own_label(outcome: LaunchOutcome) -> None:
    before = _count("ketamine_cds_smart_launches_total", result=outcome.value)
    smart_launch(outcome)
    assert _count("ketamine_cds_smart_launches_total", result=outcome.value) - before == 1


@pytest.mark.parametrize(("event", "fields", "name", "labels"), [
    (AuditEvent.SERVICE_CALL, {"service": SERVICE, "verdict": "Patient/123"}, "ketamine_cds_verdicts_total",
     {"service": SERVICE, "verdict": "other"}),
    (AuditEvent.SERVICE_CALL, {"service": "kc-10", "status": 200}, "ketamine_cds_service_calls_total",
     {"service": "other", "status": "200"}),
    (AuditEvent.SERVICE_CALL, {"service": SERVICE, "data_gaps": [{"resource_type": "Patient/1", "reason": "x"}]},
     "ketamine_cds_data_gaps_total", {"resource_type": "other", "reason": "other"}),
    (AuditEvent.AUTH_REJECTED, {"reason": "no bearer token"}, "ketamine_cds_jwt_refusals_total", {"reason": "other"}),
    (AuditEvent.FEEDBACK, {"outcomes": ["maybe"]}, "ketamine_cds_feedback_total", {"outcome": "other"}),
], ids=["verdict", "service", "gap", "refusal without its code", "outcome"])
def test_a_value_outside_the_vocabulary_is_counted_as_other(event: AuditEvent, fields: dict[str, Any], name: str,
                                                            labels: dict[str, str]) -> None:
    assert _observed(event, fields, name, **labels) == 1


def test_every_audit_event_with_a_metric_is_observed() -> None:
    counted = {AuditEvent.SERVICE_CALL: ("ketamine_cds_service_calls_total", {"service": SERVICE, "status": "200"}),
               AuditEvent.AUTH_REJECTED: ("ketamine_cds_jwt_refusals_total", {"reason": JwtRefusal.EXPIRED.value}),
               AuditEvent.FEEDBACK: ("ketamine_cds_feedback_total", {"outcome": "accepted"}),
               AuditEvent.FEEDBACK_REFUSED: ("ketamine_cds_feedback_refused_total", {})}
    fields = {"service": SERVICE, "refusal": JwtRefusal.EXPIRED, "outcomes": [FeedbackOutcome.ACCEPTED]}
    for event, (name, labels) in counted.items():
        assert _observed(event, fields, name, **labels) == 1, event
    assert set(AuditEvent) - set(counted) == {AuditEvent.BAD_REQUEST}  # counted by the HTTP metrics (route, status)


"""What a clinician is asked to do about data that could not be obtained depends on why (issue 18): asking the EHR
again helps only when it failed to answer; a record that points to a missing drug is confirmed in the chart, and
access refused or an unreadable entry comes back the same way on a retry, so the chart is where to look."""

from __future__ import annotations

import pytest

from eligibility import GapAction, gap_action, gap_action_phrase, gap_workup
from fhir_mapping import DataDomain, DataGap, GapReason, ResourceType

TRANSIENT = [GapReason.TIMEOUT, GapReason.SERVER_ERROR, GapReason.NETWORK_ERROR, GapReason.MALFORMED,
             GapReason.BUDGET_EXCEEDED, GapReason.TOO_LARGE, GapReason.INCOMPLETE]
LASTING = [GapReason.UNAUTHORIZED, GapReason.FORBIDDEN, GapReason.NOT_AUTHORIZED_SCOPE, GapReason.NOT_PROVIDED,
           GapReason.NOT_FOUND, GapReason.UNRESOLVED_REFERENCE, GapReason.REJECTED, GapReason.UNREADABLE]


def test_every_reason_is_either_transient_or_lasting() -> None:
    assert sorted(TRANSIENT + LASTING) == sorted(GapReason)


@pytest.mark.parametrize("reason", TRANSIENT)
def test_a_failed_answer_is_worth_retrying(reason: GapReason) -> None:
    assert gap_action(DataGap(ResourceType.OBSERVATION, reason)) is GapAction.RETRY
    assert gap_action(DataGap(ResourceType.MEDICATION, reason)) is GapAction.RETRY


@pytest.mark.parametrize("reason", LASTING)
def test_what_a_retry_cannot_change_is_reviewed_in_the_chart(reason: GapReason) -> None:
    assert gap_action(DataGap(ResourceType.CONDITION, reason)) is GapAction.REVIEW
    assert gap_action(DataGap(ResourceType.MEDICATION, reason)) is GapAction.CONFIRM_DRUG


def test_the_step_says_what_to_do_then_what_is_missing_and_alike_gaps_are_one_step() -> None:
    meds = frozenset({DataDomain.MEDICATIONS})
    gaps = [DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE, "Medication/a", meds),
            DataGap(ResourceType.MEDICATION, GapReason.UNRESOLVED_REFERENCE, "Medication/b", meds),
            DataGap(ResourceType.OBSERVATION, GapReason.TIMEOUT, domains=frozenset({DataDomain.PHQ9}))]
    steps = gap_workup(gaps)
    assert [s.text for s in steps] == [
        "Confirm in the chart which drug is meant: 2 medications that orders or statements name could not be "
        "obtained: the records they point to could not be found. Unknown, not absent: antidepressant trials.",
        "Retry, or review in the chart: Observations could not be obtained: the EHR did not answer in time. "
        "Unknown, not absent: PHQ-9 scores.",
    ]
    assert [s.domains for s in steps] == [meds, frozenset({DataDomain.PHQ9})]
    assert "retry" not in gap_action_phrase(GapAction.CONFIRM_DRUG)
    assert "retry" in gap_action_phrase(GapAction.RETRY)

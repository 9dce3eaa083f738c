"""Issue #20 through the cards: each decision on the order-sign cards of its fixture (the prefetch an EHR sends)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Post, hook_request, prefetch_for
from .test_cards import cards_for, check_spec_rules

pytestmark = pytest.mark.anyio


def assessed(cards: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(cards[0]["extension"]["ketamine-cds"])


async def test_a_string_total_and_a_coded_item9_reach_the_cards_with_the_suicide_risk_review(post: Post) -> None:
    cards = await cards_for(post, "50")
    assert assessed(cards)["verdict"] == "candidate"
    assert any("suicide-risk review" in c["summary"] for c in cards)


async def test_a_total_computed_from_the_items_is_said_so_on_the_card(post: Post) -> None:
    cards = await cards_for(post, "51")
    assert assessed(cards)["verdict"] == "candidate"
    assert any("computed from the nine items" in c.get("detail", "") for c in cards)


async def test_an_invalid_bipolar_condition_still_contraindicates_with_its_mark(post: Post) -> None:
    cards = await cards_for(post, "52")
    assert assessed(cards)["contraindications"]["bipolar"] == "present"
    assert any("from an entry that failed validation" in c.get("detail", "") for c in cards)


async def test_an_unreadable_condition_is_unknown_on_the_card(post: Post) -> None:
    cards = await cards_for(post, "54")
    a = assessed(cards)
    assert a["verdict"] == "needs_workup" and a["contraindications"]["bipolar"] == "unknown"


async def test_a_prefetched_search_that_says_it_is_incomplete_is_a_gap_for_that_search_only(post: Post) -> None:
    _, prefetch = prefetch_for("53")
    prefetch["phq9"]["entry"].append({"search": {"mode": "outcome"}, "resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "suppressed",
                                                       "details": {"text": "Some results were suppressed"}}]}})
    r = await post("ketamine-order-sign", hook_request("53", prefetch=prefetch))
    cards = r.json()["cards"]
    for card in cards:
        check_spec_rules(card)
    a = assessed(cards)
    assert a["verdict"] == "needs_workup" and a["contraindications"]["bipolar"] == "absent"
    assert a["contraindications"]["uncontrolled_hypertension"] == "absent"  # the BP search was complete
    assert any("PHQ-9" in c["summary"] for c in cards)


async def test_a_required_search_that_says_it_is_incomplete_is_412_as_a_failed_one_is(post: Post) -> None:
    _, prefetch = prefetch_for("53")
    prefetch["conditions"]["entry"].append({"search": {"mode": "outcome"}, "resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-costly",
                                                       "details": {"text": "Results were truncated at 50"}}]}})
    r = await post("ketamine-order-sign", hook_request("53", prefetch=prefetch))
    assert r.status_code == 412


async def test_substance_use_status_contraindicates_on_the_card(post: Post) -> None:
    cards = await cards_for(post, "55")
    assert assessed(cards)["contraindications"]["substance_use"] == "present"
    assert cards[0]["indicator"] == "critical"


async def test_non_adherence_asks_to_confirm_adherence_on_the_work_up_card(post: Post) -> None:
    cards = await cards_for(post, "56")
    assert assessed(cards)["treatment_resistance"] == "unknown"
    assert any("Confirm adherence to escitalopram" in c.get("detail", "") + c["summary"] for c in cards)


async def test_a_current_benzodiazepine_gets_a_sedation_caution_citing_the_label(post: Post) -> None:
    cards = await cards_for(post, "57")
    caution = next(c for c in cards if c["summary"].startswith("Caution:"))
    assert "monitor for sedation" in caution["summary"] and "lorazepam" in caution["summary"]
    assert caution["indicator"] == "warning"
    assert "SPRAVATO" in caution["source"]["label"]


async def test_alcohol_misuse_recorded_as_status_contraindicates_on_the_card(post: Post) -> None:
    cards = await cards_for(post, "58")
    assert assessed(cards)["contraindications"]["substance_use"] == "present"
    assert cards[0]["indicator"] == "critical"
    assert any("current misuse of alcohol" in c.get("detail", "") for c in cards)


async def test_oracle_health_orders_whose_supply_is_a_quantity_reach_the_card_as_adequate_trials(post: Post) -> None:
    cards = await cards_for(post, "59")
    a = assessed(cards)
    assert (a["verdict"], a["treatment_resistance"]) == ("candidate", "met")


def _bp_prefetch(values: tuple[int, int] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """kc-35's prefetch with its BP panels made invalid ('issued' is no instant): the latest set to ``values``
    (systolic of the latest and of the earlier reading), or every value made unreadable when None."""
    _, prefetch = prefetch_for("35")
    panels = [e["resource"] for e in prefetch["bloodPressure"]["entry"]]
    for panel in panels:
        panel["issued"] = "yesterday"
        if values is None:
            for c in panel["component"]:
                c["valueQuantity"] = {"value": "high", "unit": "mmHg"}
    if values is not None:
        latest = max(panels, key=lambda p: p["effectiveDateTime"])
        earlier = min(panels, key=lambda p: p["effectiveDateTime"])
        latest["component"][0]["valueQuantity"]["value"], earlier["component"][0]["valueQuantity"]["value"] = values
    return prefetch, panels


async def test_blood_pressures_from_invalid_entries_contraindicate_on_the_card_with_their_mark(post: Post) -> None:
    prefetch, _ = _bp_prefetch((150, 148))
    r = await post("ketamine-order-sign", hook_request("35", prefetch=prefetch))
    cards = r.json()["cards"]
    for card in cards:
        check_spec_rules(card)
    assert assessed(cards)["contraindications"]["uncontrolled_hypertension"] == "present"
    assert any("BP 150/80 mmHg — from an entry that failed validation" in c.get("detail", "") for c in cards)


async def test_blood_pressure_entries_with_nothing_readable_are_unknown_on_the_card_never_no_reading(
        post: Post) -> None:
    prefetch, _ = _bp_prefetch(None)
    r = await post("ketamine-order-sign", hook_request("35", prefetch=prefetch))
    cards = r.json()["cards"]
    a = assessed(cards)
    assert a["verdict"] == "needs_workup" and a["contraindications"]["uncontrolled_hypertension"] == "unknown"
    text = " ".join(c["summary"] + c.get("detail", "") for c in cards)
    assert "blood pressure entries could not be read" in text and "no blood pressure reading" not in text


async def test_a_required_search_answered_with_results_withheld_is_answered_with_its_rules_unknown(post: Post) -> None:
    # Fixture 53's outcome (severity warning: the search did not fail, some results were suppressed) on the
    # Condition search: the Conditions that came are read and the Condition rules are unknown, as evaluate says of
    # the same chart; a 412 would leave the clinician with no card at all.
    _, prefetch = prefetch_for("53")
    prefetch["conditions"]["entry"].append({"search": {"mode": "outcome"}, "resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "suppressed", "details": {
            "text": "Some results were suppressed: the patient restricted access to sensitive records"}}]}})
    r = await post("ketamine-order-sign", hook_request("53", prefetch=prefetch))
    assert r.status_code == 200, r.text
    a = assessed(r.json()["cards"])
    assert a["verdict"] == "needs_workup" and a["contraindications"]["bipolar"] == "unknown"
    assert a["contraindications"]["uncontrolled_hypertension"] == "absent"  # the other searches were complete

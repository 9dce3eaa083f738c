"""Issue #20's remaining shapes, each through ``evaluate``'s JSON on its fixture and on small charts that vary it:
alcohol misuse recorded as a status (decision 5), an Oracle Health order whose supply is a quantity (its
published example), and a blood pressure in an entry that fails validation (decision 3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fhir_mapping import CodeSets

from ..conftest import load_bundle
from .test_published_shapes import evaluate, fixture

AS_OF = dt.date(2026, 11, 1)
SNOMED = "http://snomed.info/sct"


# 5. Alcohol misuse recorded as status ------------------------------------------------------------------------------

def test_a_social_history_observation_coded_for_alcohol_misuse_is_substance_misuse_present() -> None:
    a = fixture("58")
    finding = a["contraindications"]["substance_use"]
    assert (a["verdict"], finding["status"]) == ("contraindicated", "present")
    described = finding["details"][0]["description"]
    assert "current misuse of alcohol" in described and "15167005" in described


def _alcohol_codes() -> list[str]:
    return sorted(code for system, code in CodeSets.load().observation_codes("alcohol_misuse_status"))


@pytest.mark.parametrize("code", _alcohol_codes())
def test_every_alcohol_misuse_code_recording_current_misuse_makes_substance_misuse_present(code: str) -> None:
    bundle = load_bundle("58")
    status = next(e["resource"] for e in bundle["entry"] if e["resource"].get("valueBoolean") is not None)
    status["code"]["coding"][0]["code"] = code
    assert evaluate(bundle)["contraindications"]["substance_use"]["status"] == "present"


@pytest.mark.parametrize("value,days_ago,present", [
    ({"valueBoolean": False}, 15, False),                     # records none
    ({"valueCodeableConcept": {"text": "No"}}, 15, False),
    ({"valueCodeableConcept": {"text": "Yes"}}, 15, True),
    ({"valueBoolean": True}, 120, False),                     # outside the 90-day window of the default policy
])
def test_alcohol_misuse_status_counts_only_when_it_records_current_misuse_within_the_window(
        value: dict[str, Any], days_ago: int, present: bool) -> None:
    bundle = load_bundle("58")
    status = next(e["resource"] for e in bundle["entry"] if e["resource"].get("valueBoolean") is not None)
    del status["valueBoolean"]
    status.update(value, effectiveDateTime=(AS_OF - dt.timedelta(days=days_ago)).isoformat())
    assert (evaluate(bundle)["contraindications"]["substance_use"]["status"] == "present") is present


def test_an_alcohol_use_status_that_is_not_a_misuse_code_changes_nothing() -> None:
    # US Core's alcohol use status (LOINC 11331-6, 'Occasional drinker') records drinking, not misuse.
    bundle = load_bundle("58")
    status = next(e["resource"] for e in bundle["entry"] if e["resource"].get("valueBoolean") is not None)
    status["code"] = {"coding": [{"system": "http://loinc.org", "code": "11331-6"}], "text": "Alcohol use status"}
    del status["valueBoolean"]
    status["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": "228276006",
                                                  "display": "Occasional drinker"}]}
    assert evaluate(bundle)["verdict"] == "candidate"


# An Oracle Health order: the supply as a quantity ---------------------------------------------------------------------

def _oracle_orders(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]


def test_oracle_health_orders_whose_supply_is_a_quantity_are_adequate_trials() -> None:
    a = fixture("59")
    assert a["verdict"] == "candidate" and a["treatment_resistance"]["status"] == "met"
    fluoxetine, duloxetine = a["treatment_resistance"]["trials"]
    # 180 capsules at 2 a day and 90 at 1 a day: 90 days each, from the order's validity start.
    assert (fluoxetine["start"], fluoxetine["end"], fluoxetine["daily_dose_mg"]) == ("2025-09-07", "2025-12-06", 40.0)
    assert (duloxetine["start"], duloxetine["end"], duloxetine["daily_dose_mg"]) == ("2026-01-05", "2026-04-05", 60.0)
    assert not fluoxetine["notes"] and not duloxetine["notes"]


def test_without_its_quantity_an_oracle_order_says_nothing_of_how_long_the_drug_was_taken() -> None:
    bundle = load_bundle("59")
    for order in _oracle_orders(bundle):
        del order["dispenseRequest"]["quantity"]
    a = evaluate(bundle)
    assert a["verdict"] == "needs_workup" and a["treatment_resistance"]["status"] == "unknown"
    assert [w["kind"] for w in a["workup"]] == ["trial_duration", "trial_duration"]


def test_a_quantity_in_another_unit_than_the_dose_is_not_read_as_a_supply() -> None:
    bundle = load_bundle("59")
    for order in _oracle_orders(bundle):
        order["dispenseRequest"]["quantity"] = {"value": 3600, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                "code": "mg"}
    assert evaluate(bundle)["treatment_resistance"]["status"] == "unknown"


def test_a_quantity_as_needed_is_no_supply() -> None:
    # As the published example's own order reads: "650 mg = 2 cap, Oral, every 4 hr, PRN: as needed for pain".
    bundle = load_bundle("59")
    for order in _oracle_orders(bundle):
        order["dosageInstruction"][0]["asNeededCodeableConcept"] = {"text": "as needed for low mood"}
    assert evaluate(bundle)["verdict"] != "candidate"

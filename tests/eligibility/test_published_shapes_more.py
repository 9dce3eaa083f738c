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


# 3. Unreadable is never absent: blood pressure --------------------------------------------------------------------

def _blood_pressures(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """kc-35's two BP panels, latest first (2026-10-20 124/80, 2026-09-02)."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
            and e["resource"]["code"]["coding"][0]["code"] == "85354-9"]


def _invalid(panel: dict[str, Any]) -> None:
    panel["issued"] = "yesterday"  # not an instant: the entry fails validation, its code and values still readable


def test_a_blood_pressure_in_an_entry_that_fails_validation_stands_marked_as_such() -> None:
    bundle = load_bundle("35")
    latest, _ = _blood_pressures(bundle)
    _invalid(latest)
    a = evaluate(bundle)
    bp = a["contraindications"]["uncontrolled_hypertension"]
    assert (a["verdict"], bp["status"]) == ("candidate", "absent")
    described = bp["details"][0]["description"]
    assert "124/80" in described and described.endswith("from an entry that failed validation")
    assert any("invalid Observation" in s for s in a["skipped_entries"])  # still reported


def test_an_elevated_reading_from_an_invalid_entry_counts_as_any_reading_does() -> None:
    bundle = load_bundle("35")
    latest, earlier = _blood_pressures(bundle)
    _invalid(latest)
    latest["component"][0]["valueQuantity"]["value"] = 150
    earlier["component"][0]["valueQuantity"]["value"] = 148
    bp = evaluate(bundle)["contraindications"]["uncontrolled_hypertension"]
    assert bp["status"] == "present"
    assert "from an entry that failed validation" in bp["details"][0]["description"]


@pytest.mark.parametrize("break_it", [
    lambda p: [c.update(valueQuantity={"value": "high", "unit": "mmHg"}) for c in p["component"]],  # no value
    lambda p: p.update(effectiveDateTime="yesterday"),                                            # no day
    lambda p: p.update(status=["final"]),                                                        # no status
], ids=["no value", "no date", "no status"])
def test_a_blood_pressure_entry_with_nothing_readable_makes_blood_pressure_unknown_never_no_reading(
        break_it: Any) -> None:
    bundle = load_bundle("35")
    for panel in _blood_pressures(bundle):
        break_it(panel)
    a = evaluate(bundle)
    bp = a["contraindications"]["uncontrolled_hypertension"]
    assert (a["verdict"], bp["status"]) == ("needs_workup", "unknown")
    assert bp["explanation"].startswith("2 blood pressure entries could not be read")
    assert "no blood pressure reading" not in bp["explanation"]
    assert a["workup"][0]["kind"] == "blood_pressure"


def test_an_unreadable_blood_pressure_beside_a_readable_one_asks_for_a_recheck() -> None:
    bundle = load_bundle("35")
    _, earlier = _blood_pressures(bundle)
    earlier["effectiveDateTime"] = "last month"
    bp = evaluate(bundle)["contraindications"]["uncontrolled_hypertension"]
    assert bp["status"] == "unknown"  # the unreadable one may be the later, higher reading
    assert bp["explanation"].startswith("1 blood pressure entry could not be read")
    assert "Observation/kc-35-obs11" in bp["explanation"] and bp["explanation"].endswith("recheck BP")


# 4. A search that says it is incomplete, or that it failed ---------------------------------------------------------

def test_an_outcome_of_severity_error_is_a_search_that_failed_not_one_merely_incomplete() -> None:
    bundle = load_bundle("53")
    outcome = next(e for e in bundle["entry"] if e.get("search", {}).get("mode") == "outcome")
    outcome["resource"]["issue"] = [{"severity": "error", "code": "too-costly",
                                     "details": {"text": "Results were truncated at 50"}}]
    a = evaluate(bundle)
    assert a["verdict"] == "needs_workup" and a["contraindications"]["bipolar"]["status"] == "unknown"
    assert any("Condition could not be obtained (server_error)" in g and "truncated" in g for g in a["data_gaps"])

"""Charts as US Core and Oracle Health publish them (issue #20): each decision through ``evaluate``'s JSON, on its
fixture built from a published example, and on small charts that vary the one shape under test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eligibility import assess_pool, assessment_to_json, load_policy
from fhir_mapping import ResourcePool, add_json, read_path

from ..conftest import fixture_bundles, load_bundle

AS_OF = dt.date(2026, 11, 1)
LOINC = "http://loinc.org"


def evaluate(bundle: dict[str, Any]) -> dict[str, Any]:
    pool = ResourcePool()
    add_json(pool, bundle, "test")
    a, _ = assess_pool(pool, load_policy("default"), AS_OF)
    return assessment_to_json(a)


def fixture(prefix: str) -> dict[str, Any]:
    path = next(p for p in fixture_bundles() if p.stem.startswith(prefix))
    a, _ = assess_pool(read_path(Path(path)), load_policy("default"), AS_OF)
    return assessment_to_json(a)


def with_entry(prefix: str, resource: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    """A fixture's Bundle with one more resource (and without the entries whose id starts with ``drop``)."""
    bundle = load_bundle(prefix)
    entries = [e for e in bundle["entry"] if drop is None or not str(e["resource"].get("id", "")).startswith(drop)]
    return {**bundle, "entry": [*entries, {"resource": resource}]}


def observation(oid: str, code: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": "Patient/kc-35"},
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": "2026-10-30", **value}


# 1. Values as EHRs send them ---------------------------------------------------------------------------------------

def test_a_us_core_phq9_total_sent_as_a_string_meets_severity_and_item9_by_code_raises_the_review() -> None:
    a = fixture("50")
    assert a["severity"]["status"] == "met" and a["severity"]["phq9"]["value"] == 12
    assert a["warnings"][0]["id"] == "suicide_risk_review"
    assert "item 9 = 2" in a["warnings"][0]["text"]
    assert not a["skipped_entries"]


@pytest.mark.parametrize("code,raises", [("LA6568-5", False), ("LA6569-3", True), ("LA6570-1", True),
                                         ("LA6571-9", True)])
def test_item9_by_loinc_answer_code_raises_the_review_exactly_as_a_number_does(code: str, raises: bool) -> None:
    item9 = observation("item9", "44260-8", valueCodeableConcept={"coding": [{"system": LOINC, "code": code}]})
    a = evaluate(with_entry("35", item9, drop="kc-35-obs"))  # kc-35 without its numeric PHQ-9 and item 9
    assert any(w["id"] == "suicide_risk_review" for w in a["warnings"]) is raises


@given(st.text(min_size=1, max_size=12).filter(lambda s: not s.strip().lstrip("+").isdigit()))
def test_a_total_string_that_is_not_an_integer_stays_skipped_and_reported(value: str) -> None:
    total = observation("total", "44261-6", valueString=value)
    a = evaluate(with_entry("35", total, drop="kc-35-obs"))
    assert a["severity"]["status"] == "unknown"
    assert any("Observation/total" in s and "not an integer" in s for s in a["skipped_entries"])


@given(st.integers(min_value=0, max_value=27), st.sampled_from(["{}", " {} ", "+{}"]))
def test_an_integer_total_string_reads_as_its_number(value: int, shape: str) -> None:
    total = observation("total", "44261-6", valueString=shape.format(value))
    a = evaluate(with_entry("35", total, drop="kc-35-obs"))
    assert a["severity"]["phq9"]["value"] == value


# 2. The nine items and no total ------------------------------------------------------------------------------------

def test_nine_items_without_a_total_are_summed_and_marked_as_computed() -> None:
    a = fixture("51")
    phq9 = a["severity"]["phq9"]
    assert (phq9["value"], phq9["note"]) == (12.0, "computed from the nine items")
    assert phq9["reference"].startswith("QuestionnaireResponse/")
    assert "computed from the nine items" in a["severity"]["explanation"]


def test_with_one_item_missing_there_is_no_total() -> None:
    bundle = load_bundle("51")
    qr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "QuestionnaireResponse")
    qr["item"] = [i for i in qr["item"] if i["linkId"] != "/44252-5"]
    a = evaluate(bundle)
    assert a["severity"]["status"] == "unknown" and a["severity"]["phq9"] is None


# 3. Unreadable is never absent -------------------------------------------------------------------------------------

def test_an_invalid_condition_with_a_readable_code_is_a_finding_marked_as_from_an_invalid_entry() -> None:
    a = fixture("52")
    bipolar = a["contraindications"]["bipolar"]
    assert bipolar["status"] == "present"
    assert "from an entry that failed validation" in bipolar["details"][0]["description"]
    assert any("invalid Condition" in s for s in a["skipped_entries"])  # still reported


def test_an_invalid_condition_with_nothing_to_read_makes_every_condition_rule_unknown() -> None:
    a = fixture("54")
    assert a["verdict"] == "needs_workup"
    for cid in ("psychosis", "bipolar", "aneurysm_or_avm", "intracerebral_hemorrhage", "cardiovascular_disease"):
        assert a["contraindications"][cid]["status"] == "unknown"
        assert "1 Condition entry could not be read" in a["contraindications"][cid]["explanation"]
    assert a["depression"]["status"] == "present"  # what was read still stands


# 4. A search that says it is incomplete ----------------------------------------------------------------------------

def test_a_searchset_outcome_saying_results_were_suppressed_is_a_gap_for_the_types_it_holds() -> None:
    a = fixture("53")
    assert a["verdict"] == "needs_workup"
    assert a["contraindications"]["bipolar"]["status"] == "unknown"
    assert any("Condition could not be obtained (incomplete)" in g and "suppressed" in g for g in a["data_gaps"])
    assert not any(g.startswith("Patient") for g in a["data_gaps"])


def test_an_outcome_that_says_nothing_of_missing_results_is_no_gap() -> None:
    bundle = load_bundle("53")
    outcome = next(e for e in bundle["entry"] if e.get("search", {}).get("mode") == "outcome")
    outcome["resource"]["issue"] = [{"severity": "warning", "code": "not-found",
                                     "details": {"text": "There is no matching patient for MRN 123456"}}]
    assert evaluate(bundle)["verdict"] == "candidate"


def test_an_information_outcome_is_no_gap() -> None:
    bundle = load_bundle("53")
    outcome = next(e for e in bundle["entry"] if e.get("search", {}).get("mode") == "outcome")
    outcome["resource"]["issue"][0]["severity"] = "information"
    assert evaluate(bundle)["verdict"] == "candidate"


# 5. Substance use recorded as status -------------------------------------------------------------------------------

def test_a_us_core_substance_use_status_recording_misuse_is_substance_misuse_present() -> None:
    a = fixture("55")
    finding = a["contraindications"]["substance_use"]
    assert finding["status"] == "present" and a["verdict"] == "contraindicated"
    assert "current misuse of amphetamine" in finding["details"][0]["description"]


@pytest.mark.parametrize("days_ago,value,present", [(20, True, True), (20, False, False), (120, True, False)])
def test_substance_use_status_counts_only_within_the_lookback_and_when_it_records_misuse(
        days_ago: int, value: bool, present: bool) -> None:
    bundle = load_bundle("55")
    status = next(e["resource"] for e in bundle["entry"] if e["resource"].get("valueBoolean") is not None)
    status["effectiveDateTime"] = (AS_OF - dt.timedelta(days=days_ago)).isoformat()
    status["valueBoolean"] = value
    assert (evaluate(bundle)["contraindications"]["substance_use"]["status"] == "present") is present


# 6. Adherence ------------------------------------------------------------------------------------------------------

def test_non_adherence_during_a_trial_makes_its_adequacy_unknown_with_a_work_up() -> None:
    a = fixture("56")
    escitalopram = next(t for t in a["treatment_resistance"]["trials"] if t["ingredient"] == "escitalopram")
    assert escitalopram["adequacy"] == "unknown"
    assert any("Non-compliance of drug therapy" in n for n in escitalopram["notes"])
    assert a["workup"][0]["kind"] == "adherence"
    assert a["workup"][0]["text"].startswith("Confirm adherence to escitalopram")


def test_a_not_taken_statement_during_a_trial_counts_as_non_adherence() -> None:
    statement = {"resourceType": "MedicationStatement", "id": "nt", "status": "not-taken",
                 "subject": {"reference": "Patient/kc-35"},
                 "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                           "code": "36437", "display": "sertraline"}]},
                 "effectiveDateTime": (AS_OF - dt.timedelta(days=380)).isoformat(),
                 "statusReason": [{"text": "Patient stopped taking it after two weeks"}]}
    a = evaluate(with_entry("35", statement))
    sertraline = next(t for t in a["treatment_resistance"]["trials"] if t["ingredient"] == "sertraline")
    assert sertraline["adequacy"] == "unknown"
    assert any(w["text"].startswith("Confirm adherence to sertraline") for w in a["workup"])


def test_adherence_outside_the_trial_changes_nothing() -> None:
    bundle = load_bundle("56")
    req = next(e["resource"] for e in bundle["entry"] if e["resource"].get("extension"))
    req["extension"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "1156699004"  # complies
    assert evaluate(bundle)["verdict"] == "candidate"


# 7. CNS depressants ------------------------------------------------------------------------------------------------

def test_a_current_benzodiazepine_gives_the_sedation_warning() -> None:
    a = fixture("57")
    w = a["warnings"][0]
    assert w["id"] == "cns_depressant_sedation" and "monitor for sedation" in w["text"]
    assert "lorazepam" in w["text"] and a["verdict"] == "candidate"


@pytest.mark.parametrize("coding,name", [
    ({"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7804", "display": "oxycodone"}, "oxycodone"),
    ({"system": "http://www.whocc.no/atc", "code": "N05CF02", "display": "Zolpidem 10 mg tablet"}, "zolpidem"),
    ({"system": "http://www.whocc.no/atc", "code": "N02AX02", "display": "Ultram"}, "Ultram"),
])
def test_opioids_and_z_drugs_are_recognised_by_rxnorm_atc_or_name(coding: dict[str, str], name: str) -> None:
    order = {"resourceType": "MedicationRequest", "id": "dep", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/kc-35"}, "authoredOn": "2026-10-01",
             "medicationCodeableConcept": {"coding": [coding]}}
    a = evaluate(with_entry("35", order))
    assert [w["id"] for w in a["warnings"]] == ["cns_depressant_sedation"]
    assert name in a["warnings"][0]["text"]


def test_a_stopped_benzodiazepine_gives_no_warning() -> None:
    order = {"resourceType": "MedicationStatement", "id": "dep", "status": "completed",
             "subject": {"reference": "Patient/kc-35"}, "effectivePeriod": {"start": "2025-01-01", "end": "2025-03-01"},
             "medicationCodeableConcept": {"text": "diazepam 5 mg tablet"}}
    assert evaluate(with_entry("35", order))["warnings"] == []

"""Reading FHIR input in every shape an EHR or a script hands us; invalid entries are skipped, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mapping import InputError, ResourcePool, add_json, read_path, to_facts

from ..conftest import PATIENTS, fixture_bundles, load_bundle


def test_bundle_types_all_load() -> None:
    for name in ("01", "02", "04"):  # searchset, transaction, collection
        bundle = load_bundle(name)
        pool = ResourcePool()
        add_json(pool, bundle, "test")
        assert len(pool.resources) == len(bundle["entry"])


def test_transaction_bundles_resolve_urn_uuid_references() -> None:
    pool = ResourcePool()
    add_json(pool, load_bundle("02"), "test")
    assert pool.resolve("urn:uuid:kc-02") is not None
    assert pool.resolve("Patient/kc-02") is pool.resolve("https://elsewhere.example/fhir/Patient/kc-02")


def test_ndjson_and_folders(tmp_path: Path) -> None:
    bundle = load_bundle("01")
    lines = [json.dumps(e["resource"]) for e in bundle["entry"]]
    (tmp_path / "data.ndjson").write_text("\n".join(lines[:10]) + "\n\nnot json\n" + "\n".join(lines[10:]))
    pool = read_path(tmp_path / "data.ndjson")
    assert len(pool.resources) == len(bundle["entry"])
    assert pool.skipped[0].reason.startswith("not JSON")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.json").write_text(json.dumps(bundle))
    assert len(read_path(tmp_path / "sub").resources) == len(bundle["entry"])


def test_prefetch_objects_tolerate_null_empty_and_operation_outcome() -> None:
    bundle = load_bundle("01")
    patient = bundle["entry"][0]["resource"]
    conditions = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]}
    prefetch = {"patient": patient, "conditions": conditions, "medications": None,
                "observations": {"resourceType": "Bundle", "type": "searchset"},
                "allergies": {"resourceType": "OperationOutcome", "issue": []}}
    pool = ResourcePool()
    add_json(pool, prefetch, "prefetch")
    assert [r["resourceType"] for r in pool.resources] == ["Patient", "Condition"]


def test_an_invalid_entry_is_skipped_and_reported_the_rest_is_kept() -> None:
    bundle = load_bundle("24")
    pool = ResourcePool()
    add_json(pool, bundle, "b")
    facts = to_facts(pool)
    assert len(facts.skipped) == 1 and "status" in facts.skipped[0].reason
    assert "kc-24-bad" not in {s.id for s in facts.scores}
    assert len(facts.scores) == sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                                    and e["resource"]["code"]["coding"][0]["code"] in ("44261-6", "44260-8")) - 1


def test_entries_the_rules_do_not_read_are_not_validated() -> None:
    lab = {"resourceType": "Observation", "id": "lab", "subject": {"reference": "Patient/p"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}, "valueString": 5}
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "entry": [{"resource": lab}]}, "b")
    assert to_facts(pool).skipped == ()  # invalid (valueString is a number) but irrelevant: never validated


def test_unknown_resource_types_are_ignored_without_validation() -> None:
    pool = ResourcePool()
    add_json(pool, {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Immunization", "bogus": 1}}]},
             "b")
    assert pool.resources == [] and pool.skipped == []


@pytest.mark.parametrize("content,message", [
    ("{not json", "not JSON"),
    ('{"hello": "world"}', "not a FHIR resource"),
    ("[1, 2]", "not a FHIR resource"),
])
def test_unreadable_input_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_path(path)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_path(tmp_path / "nope.json")
    with pytest.raises(InputError, match="no FHIR resources"):
        read_path(tmp_path)


def test_several_patients_need_a_choice() -> None:
    pool = read_path(PATIENTS)
    with pytest.raises(InputError, match=f"{len(fixture_bundles())} patients"):
        to_facts(pool)
    assert to_facts(pool, "kc-05").patient is not None
    with pytest.raises(InputError, match="not in the input"):
        to_facts(pool, "nobody")

"""The FHIR client against a real FHIR R4 server (SEKMET) on loopback, loaded with the fixture patients."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from eligibility import assess, assessment_to_json, load_policy
from fhir_mapping import ClientSettings, FhirClient, ResourcePool, add_json, to_facts

from ..conftest import Sekmet, server_comparable_bundles

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_every_fixture_patient_assesses_the_same_from_the_server_as_from_the_file(sekmet: Sekmet) -> None:
    policy = load_policy("default")
    client = FhirClient(sekmet.base_url, settings=ClientSettings(budget_s=20))
    for path in server_comparable_bundles():
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        pid = expected["patient"].removeprefix("Patient/")
        as_of = dt.date.fromisoformat(expected["as_of"])
        result = await client.fetch_patient(pid)
        assert result.pool.gaps == [], path.name
        from_server = assessment_to_json(assess(to_facts(result.pool, pid), policy, as_of))
        file_pool = ResourcePool()
        add_json(file_pool, json.loads(path.read_text()), path.name)
        from_file = assessment_to_json(assess(to_facts(file_pool, pid), policy, as_of))
        from_server.pop("skipped_entries"), from_file.pop("skipped_entries")
        assert from_server == from_file, path.name


async def test_paging_is_followed_on_a_real_server(sekmet: Sekmet) -> None:
    client = FhirClient(sekmet.base_url, settings=ClientSettings(page_size=2, budget_s=20))
    result = await client.fetch_patient("kc-01")
    observations = [r for r in result.reports if r.resource_type == "Observation"]
    assert max(r.pages for r in observations) >= 3
    assert sum(r.entries for r in observations) == sum(
        1 for r in result.pool.resources if r["resourceType"] == "Observation")
    assert to_facts(result.pool, "kc-01").courses  # medications too


async def test_an_unknown_patient_is_a_gap_for_patient_and_empty_elsewhere(sekmet: Sekmet) -> None:
    result = await FhirClient(sekmet.base_url).fetch_patient("does-not-exist")
    assert [g.resource_type.value for g in result.pool.gaps] == ["Patient"]


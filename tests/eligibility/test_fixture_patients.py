"""Every hand-made fixture patient reaches its expected assessment (fixtures/README.md lists them)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from eligibility import assess_pool, assessment_to_json, available_policies, load_policy
from fhir_mapping import read_path

from ..conftest import fixture_bundles


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@pytest.mark.parametrize("path", fixture_bundles(), ids=lambda p: p.stem)
def test_fixture_patient(path: Path) -> None:
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    a, _ = assess_pool(read_path(path), load_policy(expected["policy"]), dt.date.fromisoformat(expected["as_of"]))
    result = assessment_to_json(a)
    assert result["patient"] == expected["patient"]
    for key, want in expected.items():
        if key in ("patient", "as_of", "policy"):
            continue
        got = _lookup(result, key)
        if isinstance(want, str) and isinstance(got, str) and key.startswith("skipped_entries"):
            assert want in got, key
        else:
            assert got == want, f"{key}: {got!r} != {want!r}"


def test_fixtures_cover_every_verdict_and_contraindication() -> None:
    verdicts, present = set(), set()
    for path in fixture_bundles():
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        verdicts.add(expected["verdict"])
        present |= {k.split(".")[1] for k, v in expected.items()
                    if k.startswith("contraindications.") and k.endswith(".status") and v == "present"}
    assert verdicts == {"candidate", "needs_workup", "not_indicated", "contraindicated", "continue", "reassess"}
    assert len(present) == 9


APPROVED = Path(__file__).resolve().parents[2] / "fixtures" / "assessments"


@pytest.mark.parametrize("policy_id", available_policies())
@pytest.mark.parametrize("path", fixture_bundles(), ids=lambda p: p.stem)
def test_the_whole_assessment_is_the_approved_one(path: Path, policy_id: str) -> None:
    """Every field, evidence id, work-up item, warning and explanation, under every policy, as approved.

    The approved files are written by ``fixtures/build_patients.py --approve`` after a deliberate change of the
    rules and reviewed as a diff: a changed line is a changed answer to a clinician."""
    approved = json.loads((APPROVED / policy_id / path.name).read_text())
    a, _ = assess_pool(read_path(path), load_policy(policy_id), dt.date.fromisoformat(approved["as_of"]))
    assert assessment_to_json(a) == approved


@pytest.mark.parametrize("path", fixture_bundles(), ids=lambda p: p.stem)
def test_what_the_clinician_sees_when_each_search_fails_is_the_approved_answer(path: Path) -> None:
    """Each fixture with one data domain's search failed: the unknowns, their explanations and the work-up, as
    approved (``fixtures/assessments/degraded``)."""
    import sys

    sys.path.insert(0, str(APPROVED.parents[1]))
    from fixtures.build_patients import assess_with_gap

    approved = json.loads((APPROVED / "degraded" / path.name).read_text())
    for domain, answer in approved.items():
        assert assessment_to_json(assess_with_gap(path, domain)) == answer, domain


def test_a_moderate_phq9_shows_the_default_threshold_against_the_vas() -> None:
    """PHQ-9 12 (moderate): the default and label policies' 10 is met, the VA IV-ketamine policy's 15 is not, with
    everything else about the chart a candidate's."""
    path = next(p for p in fixture_bundles() if p.stem == "35-moderate-severity")
    answers = {}
    for policy_id in available_policies():
        a, _ = assess_pool(read_path(path), load_policy(policy_id), dt.date(2026, 11, 1))
        result = assessment_to_json(a)
        answers[policy_id] = (result["verdict"], result["severity"]["status"], result["severity"]["explanation"])
        assert result["treatment_resistance"]["status"] == "met", policy_id
    assert answers == {
        "default": ("candidate", "met", "PHQ-9 12 on 2026-10-20 (at or above 10)"),
        "esketamine-us-label": ("candidate", "met", "PHQ-9 12 on 2026-10-20 (at or above 10)"),
        "va-iv-ketamine": ("not_indicated", "not_met", "PHQ-9 12 on 2026-10-20 (below 15)"),
    }

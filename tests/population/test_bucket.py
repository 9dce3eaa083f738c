"""``population.bucket``: one bucket's patients through the card's core, and the workers that run it."""

from __future__ import annotations

import datetime as dt
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eligibility import assess_pool, assessment_to_json, load_policy
from fhir_mapping import ResourcePool, add_json, clear_validation_cache, loading
from population import assess_patient
from population.bucket import WORKER_GC_THRESHOLD, prepare_worker

AS_OF = dt.date(2026, 11, 1)
POLICY = load_policy("default")
CHART = Path(__file__).resolve().parents[2] / "fixtures" / "patients" / "01-candidate-statements.json"


def _lines() -> tuple[str, list[tuple[int, int, str]]]:
    """The chart as an export holds it: one line per resource, and its patient's key."""
    resources = [e["resource"] for e in json.loads(CHART.read_text(encoding="utf-8"))["entry"]]
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return patient, [(0, n, json.dumps(r)) for n, r in enumerate(resources, 1)]


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every resource the R4B models actually validate (cache misses), in order."""
    seen: list[Any] = []
    real = loading._validate

    def counting(resource: Any) -> str | None:
        seen.append(resource)
        return real(resource)

    monkeypatch.setattr(loading, "_validate", counting)
    clear_validation_cache()
    yield seen
    clear_validation_cache()


def test_a_bucket_validates_each_resource_itself_without_the_shared_cache(validations: list[Any]) -> None:
    # An export holds each resource once: keying it in the cache (a JSON dump and a hash each) would only cost.
    patient, lines = _lines()
    first = assess_patient(patient, lines, ["chart.ndjson"], {}, [], POLICY, AS_OF)
    once = len(validations)
    second = assess_patient(patient, lines, ["chart.ndjson"], {}, [], POLICY, AS_OF)
    assert once > 0 and len(validations) == 2 * once  # nothing kept between the two
    assert assessment_to_json(first) == assessment_to_json(second)


def test_the_cards_pools_still_find_a_resource_validated_before(validations: list[Any]) -> None:
    # The card sees a chart again on order-select, order-sign and re-sign: its pools keep the cache.
    patient, lines = _lines()
    answers, counts = [], []
    for _ in range(2):
        pool = ResourcePool()
        for _, n, line in lines:
            add_json(pool, json.loads(line), f"chart.ndjson:{n}")
        answers.append(assessment_to_json(assess_pool(pool, POLICY, AS_OF, patient_id=patient)[0]))
        counts.append(len(validations))
    assert counts[0] > 0 and counts[1] == counts[0]  # the second time, every answer came from the cache
    assert answers[0] == answers[1]


def test_without_the_cache_the_answer_is_the_same_as_with_it() -> None:
    patient, lines = _lines()
    cached = ResourcePool()
    for _, n, line in lines:
        add_json(cached, json.loads(line), f"chart.ndjson:{n}")
    card = assess_pool(cached, POLICY, AS_OF, patient_id=patient)[0]
    screened = assess_patient(patient, lines, ["chart.ndjson"], {}, [], POLICY, AS_OF)
    assert assessment_to_json(screened) == assessment_to_json(card)


def test_a_prepared_worker_has_its_models_loaded_and_the_collector_set() -> None:
    threshold = gc.get_threshold()
    try:
        prepare_worker()
        assert gc.get_threshold() == WORKER_GC_THRESHOLD
        assert gc.get_freeze_count() > 0  # what was loaded is out of the collector's walks
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)

"""Robustness: patients from an independent generator (carebundle, at test time) assess without error and
sensibly. carebundle emits ICD-10-CM conditions, LOINC labs and vitals (blood pressure), and RxNorm orders."""

from __future__ import annotations

import datetime as dt
import json

import carebundle
import pytest

from eligibility import Presence, Verdict, assess, load_policy
from fhir_mapping import ResourcePool, add_json, to_facts

REFERENCE = dt.date(2026, 1, 1)


def generated(profile: str, seed: int, sex: str = "F") -> ResourcePool:
    pool = ResourcePool()
    add_json(pool, json.loads(carebundle.to_json(carebundle.generate_bundle(
        profile=profile, seed=seed, sex=sex, reference_date=REFERENCE))), f"{profile}-{seed}")
    return pool


@pytest.mark.parametrize("profile", ["hypertension", "type2_diabetes", "ckd_stage3", "anaemia", "healthy"])
@pytest.mark.parametrize("seed", [1, 2])
def test_generated_patients_assess_sensibly(profile: str, seed: int) -> None:
    pool = generated(profile, seed, "F" if seed % 2 else "M")
    facts = to_facts(pool)
    assert facts.skipped == ()  # the generator's US Core resources are valid R4
    assert facts.blood_pressures, "vitals carry a blood-pressure panel"
    a = assess(facts, load_policy("default"), REFERENCE)
    # None of these profiles has depression: never a candidate, and the reason says why.
    assert a.depression.status is Presence.ABSENT
    assert a.verdict in (Verdict.NOT_INDICATED, Verdict.CONTRAINDICATED)
    assert a.reasons and a.data_gaps == ()


def test_generated_hypertension_series_is_read_as_readings_over_time() -> None:
    pool = ResourcePool()
    history = carebundle.generate_history(profile="hypertension", visits=5, seed=3)
    for bundle in history if isinstance(history, list) else [history]:
        add_json(pool, json.loads(carebundle.to_json(bundle)), "history")
    facts = to_facts(pool)
    assert len(facts.blood_pressures) >= 2
    assert all(b.systolic is not None and 60 < b.systolic < 260 for b in facts.blood_pressures)


CLINOSIM = __import__("pathlib").Path(__file__).resolve().parents[2] / "fixtures" / "generated" / "clinosim"


def test_clinosim_sample_assesses_every_patient_sensibly() -> None:
    from eligibility import Criterion, assess_pool
    from fhir_mapping import patients_in, read_path

    pool = read_path(CLINOSIM)
    patients = patients_in(pool)
    assert len(patients) == 6
    verdicts = {}
    for pid in patients:
        a, facts = assess_pool(pool, load_policy("default"), dt.date(2026, 10, 1), pid)
        verdicts[pid] = a.verdict
        assert facts.skipped == () and a.data_gaps == ()
        assert a.depression.status is Presence.ABSENT  # no depression in this sample: never a candidate
        assert a.treatment_resistance.status is Criterion.NOT_MET
        # Orders for non-antidepressants are recognised as such, not miscounted as trials.
        assert facts.courses == ()
    assert verdicts["pt-2714c0d9e0ba"] is Verdict.CONTRAINDICATED  # repeated readings above 140/90

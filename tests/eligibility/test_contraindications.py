"""The nine contraindications: present with evidence, absent when the data says so, unknown when it cannot."""

from __future__ import annotations

import pytest

from eligibility import ContraindicationId, Presence, assess_contraindications, load_policy
from fhir_mapping import ClinicalStatus, Gender, ResourceType

from .builders import AS_OF, allergy, bp, condition, gap, hcg, patient, screen, trd_candidate

DEFAULT = load_policy("default")
C = ContraindicationId


def status(cid: ContraindicationId, **changes: object) -> Presence:
    return assess_contraindications(trd_candidate(**changes), DEFAULT, AS_OF)[cid].status


@pytest.mark.parametrize("cid,concept", [
    (C.PSYCHOSIS, "psychosis"), (C.BIPOLAR, "bipolar"),
    (C.ANEURYSM_OR_AVM, "aneurysm_or_avm"), (C.INTRACEREBRAL_HEMORRHAGE, "intracerebral_hemorrhage"),
])
def test_any_history_counts_even_resolved(cid: ContraindicationId, concept: str) -> None:
    resolved = condition(concept, status=ClinicalStatus.RESOLVED, onset=3000, cid="h1")
    finding = assess_contraindications(
        trd_candidate(conditions=(condition("major_depression"), resolved)), DEFAULT, AS_OF)[cid]
    assert finding.status is Presence.PRESENT
    assert finding.evidence[0].reference == "Condition/h1"
    assert status(cid) is Presence.ABSENT
    assert status(cid, gaps=(gap(ResourceType.CONDITION),)) is Presence.UNKNOWN


@pytest.mark.parametrize("readings,expected", [
    ((bp(60, 150, 85), bp(5, 145, 80)), Presence.PRESENT),     # latest and another above
    ((bp(60, 120, 95), bp(5, 130, 92)), Presence.PRESENT),     # diastolic alone counts
    ((bp(5, 185, 100),), Presence.PRESENT),                    # severe once is enough
    ((bp(5, 150, 112),), Presence.PRESENT),
    ((bp(5, 150, 95),), Presence.UNKNOWN),                     # a single elevated reading: recheck
    ((bp(60, 120, 80), bp(5, 150, 95)), Presence.UNKNOWN),     # only the latest is elevated
    ((bp(60, 160, 100), bp(5, 130, 85)), Presence.ABSENT),     # latest controlled
    ((bp(5, 140, 90),), Presence.ABSENT),                      # 140/90 is not above 140/90
    ((bp(100, 170, 100),), Presence.UNKNOWN),                  # outside 90 days: no reading
    ((), Presence.UNKNOWN),
])
def test_uncontrolled_hypertension(readings: tuple, expected: Presence) -> None:  # type: ignore[type-arg]
    assert status(C.UNCONTROLLED_HYPERTENSION, blood_pressures=readings) is expected


def test_cardiovascular_disease() -> None:
    mdd = condition("major_depression")
    def with_(*cs: object) -> Presence:
        return status(C.CARDIOVASCULAR_DISEASE, conditions=(mdd, *cs))
    assert with_(condition("heart_failure", onset=2000, cid="hf")) is Presence.PRESENT  # chronic counts
    assert with_(condition("heart_failure", status=ClinicalStatus.RESOLVED, cid="hf")) is Presence.ABSENT
    assert with_(condition("myocardial_infarction", onset=42, cid="mi")) is Presence.PRESENT
    assert with_(condition("myocardial_infarction", onset=43, cid="mi")) is Presence.ABSENT
    assert with_(condition("unstable_angina", cid="ua")) is Presence.PRESENT
    assert with_(condition("myocardial_infarction", onset=None, recorded=10, cid="mi")) is Presence.UNKNOWN
    assert with_(condition("myocardial_infarction", onset=None, recorded=400, cid="mi")) is Presence.ABSENT


def test_substance_use() -> None:
    mdd = condition("major_depression")
    assert status(C.SUBSTANCE_USE, conditions=(mdd, condition("substance_use", cid="s"))) is Presence.PRESENT
    assert status(C.SUBSTANCE_USE, lab_results=(screen(30, True),)) is Presence.PRESENT
    assert status(C.SUBSTANCE_USE, lab_results=(screen(91, True),)) is Presence.ABSENT
    assert status(C.SUBSTANCE_USE, lab_results=(screen(30, True, "ketamine"),)) is Presence.PRESENT
    # No screen at all is "not documented" (absent), not unknown: the screen is suggested work-up.
    assert status(C.SUBSTANCE_USE, lab_results=()) is Presence.ABSENT
    assert status(C.SUBSTANCE_USE, gaps=(gap(ResourceType.OBSERVATION),)) is Presence.UNKNOWN


def test_pregnancy() -> None:
    assert status(C.PREGNANCY, lab_results=(hcg(10, True),)) is Presence.PRESENT
    assert status(C.PREGNANCY, lab_results=(hcg(20, True), hcg(5, False))) is Presence.ABSENT  # latest negative
    assert status(C.PREGNANCY, lab_results=(hcg(31, True),)) is Presence.ABSENT
    mdd = condition("major_depression")
    assert status(C.PREGNANCY, conditions=(mdd, condition("pregnancy", cid="p"))) is Presence.PRESENT
    male = patient(Gender.MALE)
    assert status(C.PREGNANCY, patient=male, gaps=(gap(ResourceType.OBSERVATION),)) is Presence.ABSENT
    assert status(C.PREGNANCY, gaps=(gap(ResourceType.OBSERVATION),)) is Presence.UNKNOWN


def test_ketamine_hypersensitivity() -> None:
    assert status(C.KETAMINE_HYPERSENSITIVITY, allergies=(allergy(),)) is Presence.PRESENT
    assert status(C.KETAMINE_HYPERSENSITIVITY, allergies=(allergy("resolved"),)) is Presence.ABSENT
    assert status(C.KETAMINE_HYPERSENSITIVITY, gaps=(gap(ResourceType.ALLERGY_INTOLERANCE),)) is Presence.UNKNOWN


def test_evidence_found_wins_over_a_gap_elsewhere() -> None:
    facts = trd_candidate(allergies=(allergy(),), gaps=(gap(ResourceType.ALLERGY_INTOLERANCE),))
    assert assess_contraindications(facts, DEFAULT, AS_OF)[C.KETAMINE_HYPERSENSITIVITY].status is Presence.PRESENT

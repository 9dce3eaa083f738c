"""Policies are data: every threshold cites a source, and uncited or incomplete policies are refused."""

from __future__ import annotations

import pytest

from eligibility import Mode, PolicyError, available_policies, load_policy, parse_policy
from eligibility.policy import _text


def test_three_policies_ship() -> None:
    assert available_policies() == ["default", "esketamine-us-label", "va-iv-ketamine"]


@pytest.mark.parametrize("pid", ["default", "esketamine-us-label", "va-iv-ketamine"])
def test_every_threshold_and_rule_cites_a_known_source(pid: str) -> None:
    policy = load_policy(pid)
    for name, citation in policy.citations.items():
        assert citation.sources, name
        assert all(s.url.startswith("https://") and s.label for s in citation.sources), name
    for rule in policy.contraindications.values():
        assert rule.citation.sources


def test_unverified_values_are_marked_so() -> None:
    default = load_policy("default")
    assert default.cite("bp_severe_systolic").verified is False  # WEAK single-clinic source
    assert default.cite("severity_phq9_min").verified is True
    assert default.dose_floor_citation.verified is False  # proxy floors, ATHF-SF/ATRQ UNVERIFIED
    va = load_policy("va-iv-ketamine")
    assert va.thresholds.severity_phq9_min == 15 and va.cite("severity_phq9_min").verified is False


def test_label_policy_modes() -> None:
    label = load_policy("esketamine-us-label")
    absolute = {c.value for c, r in label.contraindications.items() if r.mode is Mode.EXCLUDE}
    assert absolute == {"aneurysm_or_avm", "intracerebral_hemorrhage", "ketamine_hypersensitivity"}


def test_a_threshold_without_a_source_is_refused() -> None:
    text = _text("default.toml").replace('value = 10\nsource = ["S32"]', "value = 10", 1)
    with pytest.raises(PolicyError, match="severity_phq9_min: no source cited"):
        parse_policy(text, "broken")


def test_a_missing_threshold_or_unknown_source_is_refused() -> None:
    text = _text("default.toml").replace("[thresholds.recent_mi_days]", "[thresholds.renamed]", 1)
    with pytest.raises(PolicyError, match="thresholds missing: recent_mi_days"):
        parse_policy(text, "broken")
    with pytest.raises(PolicyError, match="unknown source S999"):
        parse_policy(_text("default.toml").replace('source = ["S32"]', 'source = ["S999"]', 1), "broken")


def test_an_unknown_policy_id_is_a_clear_error() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'nope'"):
        load_policy("nope")

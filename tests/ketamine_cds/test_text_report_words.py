"""``evaluate --format text`` is read by clinicians: statuses in words, never the enums' wire values (issue 18)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from eligibility import assess_pool, load_policy
from fhir_mapping import read_path
from ketamine_cds.text_report import render_text

PATIENTS = Path(__file__).resolve().parents[2] / "fixtures" / "patients"


@pytest.mark.parametrize("name", sorted(p.name for p in PATIENTS.glob("[0-9]*.json") if ".expected" not in p.name))
def test_no_wire_value_or_shorthand_in_the_text_report(name: str) -> None:
    a, facts = assess_pool(read_path(PATIENTS / name), load_policy("default"), dt.date(2026, 11, 1))
    text = render_text(a, facts)
    for wire in ("not_met", "no_response", ": absent", "(>= ", "(< ", "(s)"):
        assert wire not in text, (name, wire)


def test_a_trial_and_a_checklist_line_in_words() -> None:
    a, facts = assess_pool(read_path(PATIENTS / "31-unresolved-medication.json"), load_policy("default"),
                           dt.date(2026, 11, 1))
    text = render_text(a, facts)
    assert "— adequate, no response, PHQ-9 21 → 19" in text
    assert "  [ ] psychotic disorder — none on record (any history searched)" in text
    assert "Severity: met — PHQ-9 19 on 2026-10-20 (at or above 10)" in text

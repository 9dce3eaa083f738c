"""The demo: every bundled synthetic patient assessed, as a table, then one patient in full."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from eligibility import Policy, assess_pool
from fhir_mapping import read_path

from .text_report import render_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "patients"


def run_demo(policy: Policy) -> str:
    rows = []
    showcase = None
    for bundle in sorted(FIXTURES.glob("[0-9]*.json")):
        if bundle.name.endswith(".expected.json"):
            continue
        expected = json.loads(bundle.with_name(bundle.stem + ".expected.json").read_text())
        a, facts = assess_pool(read_path(bundle), policy, dt.date.fromisoformat(expected["as_of"]))
        rows.append(f"{bundle.stem:<44} {a.verdict.value:<16} {a.reasons[0].text if a.reasons else ''}"[:150])
        if showcase is None:
            showcase = render_text(a, facts)
    header = f"ketamine-cds demo — policy {policy.id}: {len(rows)} synthetic patients\n"
    return header + "\n".join(rows) + "\n\n" + (showcase or "")

"""For anxiety without depression, every face leads with the decisive reason: anxiety alone is not an indication
(issue 18 item 8), before the trials and the severity that would not matter without depression."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cds_hooks.cards import CardContext, order_cards
from eligibility import ReasonKind, Verdict, assess_pool, assessment_to_json, load_policy
from fhir_mapping import read_path
from ketamine_cds.text_report import render_text
from smart_app.findings import decisive_findings

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "patients" / "05-anxiety-only.json"
POLICY = load_policy("default")
DECISIVE = "Anxiety disorder without major depression: not an indication"


def test_anxiety_alone_comes_first_on_every_face() -> None:
    a, facts = assess_pool(read_path(FIXTURE), POLICY, dt.date(2026, 11, 1))
    assert a.verdict is Verdict.NOT_INDICATED and len(a.reasons) > 1  # other reasons exist, and follow
    assert a.reasons[0].kind is ReasonKind.ANXIETY_WITHOUT_DEPRESSION
    assert assessment_to_json(a)["reasons"][0]["text"] == DECISIVE  # evaluate --format json
    verdict_lines = render_text(a, facts).split("Verdict:", 1)[1].splitlines()
    assert verdict_lines[1].strip() == f"- {DECISIVE}"  # evaluate --format text
    assert decisive_findings(a, POLICY)[0].title == DECISIVE  # the review's verdict box
    (card,) = order_cards(a, POLICY, CardContext("h", "kc-05", None, None, (), None))
    assert card.summary.endswith("not indicated: anxiety alone is not an indication")
    bullets = [line for line in card.detail.splitlines() if line.startswith("- ")]
    assert bullets[0] == f"- {DECISIVE}"

"""The work-up card asks for what can be done and cites what asks for it (issue 18): a medication order whose drug
cannot be found is confirmed in the chart, not "retried"; the card's source is the rule left unknown; its detail ends
with the primary sources of every item as links; the reminders' numbers are the policy's."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from cds_hooks.cards import CardContext, order_cards
from eligibility import Verdict, assess_pool, load_policy, parse_policy
from fhir_mapping import read_path

PATIENTS = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
AS_OF = dt.date(2026, 11, 1)


def _card(name: str, policy_id: str = "default"):  # type: ignore[no-untyped-def]
    policy = load_policy(policy_id)
    a, _ = assess_pool(read_path(PATIENTS / name), policy, AS_OF)
    cards = order_cards(a, policy, CardContext("h", "p", None, None, (), None))
    return a, policy, cards


def test_an_unresolved_drug_is_confirmed_in_the_chart_and_cites_the_trials_rule() -> None:
    a, policy, (card,) = _card("31-unresolved-medication.json")
    assert a.verdict is Verdict.NEEDS_WORKUP
    assert card.summary.endswith("confirm which drug a medication order names")
    assert "retry" not in card.summary.lower() and "could not be fetched" not in card.summary
    assert "- Confirm in the chart which drug is meant: A medication that an order or statement names" in card.detail
    trials_rule = next(s for s in policy.cite("min_failed_trials").sources if s.primary)
    assert (card.source.label, card.source.url) == (trials_rule.label[:200], trials_rule.url)


def test_the_work_up_detail_links_the_primary_source_of_each_item() -> None:
    a, policy, (card,) = _card("20-no-recent-phq9.json")
    assert a.verdict is Verdict.NEEDS_WORKUP
    sources = card.detail.splitlines()[-1]
    assert sources.startswith("Sources: ")
    links = re.findall(r"\[([^\]]+)\]\((https://[^)]+)\)", sources)
    phq9 = [s for s in policy.cite("severity_phq9_min").sources if s.primary]
    assert phq9 and all((s.label, s.url) in links for s in phq9)
    assert len(links) == len(set(links))  # each source once
    assert all(not s.startswith("ketamine-cds local") for s, _ in links)  # primary sources only


def test_the_reminders_numbers_come_from_the_policy() -> None:
    _, policy, (card,) = _card("01-candidate-statements.json")
    t = policy.thresholds
    assert f"above {t.bp_systolic_above:g}/{t.bp_diastolic_above:g}: weigh delaying" in card.detail
    assert f"at least {t.session_monitoring_minutes / 60:g} hours" in card.detail
    assert "> 140/90" not in card.detail


def test_a_sites_policy_changes_the_numbers_the_cards_say() -> None:
    site = parse_policy('''id = "site"
extends = "default"
title = "Site policy"
summary = "A site's stricter blood pressure and a shorter observation."
[thresholds.bp_systolic_above]
value = 150
source = ["S1"]
verified = true
[thresholds.bp_diastolic_above]
value = 95
source = ["S1"]
verified = true
[thresholds.session_monitoring_minutes]
value = 60
source = ["S1", "S3"]
verified = true
[thresholds.session_bp_recheck_minutes]
value = 30
source = ["S1"]
verified = true
[thresholds.esketamine_older_start_mg]
value = 20
source = ["S8"]
verified = true
''', "site")
    a, _ = assess_pool(read_path(PATIENTS / "01-candidate-statements.json"), site, AS_OF)
    (card,) = order_cards(a, site, CardContext("h", "p", None, None, (), None))
    assert "above 150/95: weigh delaying" in card.detail and "at least 1 hour and until" in card.detail
    assert "≥1 h," in card.summary and "~30 min after" in card.summary
    assert "and about 30 minutes after (label)" in card.detail and "40 min" not in card.summary + card.detail
    older, _ = assess_pool(read_path(PATIENTS / "21-warnings-maoi-item9-older.json"), site, AS_OF)
    assert any("starting dose for older adults is 20 mg" in w.text for w in older.warnings)

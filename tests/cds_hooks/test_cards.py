"""Cards: one per concern, the right indicator, evidence and gaps in the detail, suggestions and links per the spec."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from fhir_mapping import GapReason

from ..conftest import server_comparable_bundles
from .conftest import Post, draft_order, hook_request

pytestmark = pytest.mark.anyio
SPEC_INDICATORS = {"info", "warning", "critical"}


def check_spec_rules(card: dict[str, Any]) -> None:
    """The service-side card rules of CDS Hooks 2.0 (and the 3.0 invariants cds-resp-1..6)."""
    assert isinstance(card["uuid"], str) and card["uuid"]
    def no_null_or_empty(value: object) -> None:  # requirement 3: no null or empty JSON elements
        assert value is not None and value != "" and value != [] and value != {}
        if isinstance(value, dict):
            for v in value.values():
                no_null_or_empty(v)
        elif isinstance(value, list):
            for v in value:
                no_null_or_empty(v)
    no_null_or_empty(card)
    assert isinstance(card.get("detail", ""), str)  # GitHub-flavoured Markdown text
    assert len(card["summary"]) < 140
    assert card["indicator"] in SPEC_INDICATORS
    assert card["source"]["label"]
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        if card["selectionBehavior"] == "at-most-one":
            assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) <= 1
        for s in card["suggestions"]:
            assert s["label"] and s["uuid"]
            for a in s["actions"]:
                assert a["type"] in ("create", "update", "delete") and a["description"]
                if a["type"] == "delete":
                    assert isinstance(a["resourceId"], str)
    for reason in card.get("overrideReasons") or []:
        assert reason["display"] and reason["code"] and reason["system"]
    for link in card.get("links") or []:
        assert link["type"] in ("absolute", "smart") and link["label"] and link["url"]
        if link["type"] == "absolute":
            assert "appContext" not in link
        if "appContext" in link:
            assert isinstance(link["appContext"], str)


async def cards_for(post: Post, fixture: str, **kw: Any) -> list[dict[str, Any]]:
    r = await post("ketamine-order-sign", hook_request(fixture, **kw))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    for card in cards:
        check_spec_rules(card)
    return cards


@pytest.mark.parametrize("path", server_comparable_bundles(), ids=lambda p: p.stem)
async def test_every_fixture_patient_gets_spec_conformant_cards(post: Post, path) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    cards = await cards_for(post, path.stem[:2])
    (main,) = [c for c in cards if not c["summary"].startswith("Caution")]  # the verdict's card
    indicator = {"contraindicated": "critical", "not_indicated": "warning", "needs_workup": "warning",
                 "candidate": "info", "continue": "info", "reassess": "warning"}[expected["verdict"]]
    assert main["indicator"] == indicator
    assert len(cards) <= 3  # one per concern, never a wall
    order = {"critical": 0, "warning": 1, "info": 2}
    assert [order[c["indicator"]] for c in cards] == sorted(order[c["indicator"]] for c in cards)
    for card in cards:  # the decisive finding in plain words, at a glance
        assert len(card["summary"]) <= 90, card["summary"]
        assert not re.search(r"\b[a-z]+_[a-z_]+\b|\d\.0\b|\.\.|,,|\[S\d+\]", card["summary"]), card["summary"]
        assert not re.search(r"\b(no_response|needs_workup|not_indicated|rxnorm_\w+)\b|\d\.0 mg", card["detail"])
        # What a clinician reads: no gap reason code, no "not fully verified" beside a fact (issue 18 items 6, 7).
        assert not re.search(r"\b(" + "|".join(r.value for r in GapReason) + r")\b", card["detail"]), card["detail"]
        assert "not fully verified" not in card["detail"]


async def test_a_drug_that_could_not_be_read_is_said_in_words_without_record_ids(post: Post) -> None:
    cards = await cards_for(post, "31")
    detail = "\n".join(c["detail"] for c in cards)
    assert "A medication that an order or statement names could not be obtained: the record it points to could " \
           "not be found. Unknown, not absent: antidepressant trials." in detail
    assert "kc-31-gone" not in detail and "unresolved_reference" not in detail and "Medication/" not in detail


async def test_contraindicated_card_names_the_evidence_and_offers_to_remove_the_order(post: Post) -> None:
    card = (await cards_for(post, "10"))[0]
    assert card["indicator"] == "critical"
    assert re.fullmatch(r"Esketamine: bipolar disorder on record \(\d{4}\) — excluded by clinic policy",
                        card["summary"])
    assert "Condition/kc-10-cond2" in card["detail"] and "Bipolar II disorder" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete",
                                      "description": "Remove the draft order MedicationRequest/draft-1",
                                      "resourceId": "MedicationRequest/draft-1"}]
    assert card["selectionBehavior"] == "at-most-one"
    assert {r["code"] for r in card["overrideReasons"]} >= {"benefit-outweighs-risk", "chart-data-incorrect"}
    assert card["source"]["url"].startswith("https://")


async def test_candidate_card_carries_rems_reminders_and_a_smart_link(post: Post) -> None:
    cards = await cards_for(post, "01")
    assert [c["indicator"] for c in cards] == ["info"]
    card = cards[0]
    assert "≥2 h" in card["summary"] and "40 min" in card["summary"]
    assert "pulse oximeter" in card["detail"] and "2 hours" in card["detail"]
    assert "overrideReasons" not in card
    (link,) = card["links"]
    assert link["type"] == "smart" and link["url"] == "http://cds.test/smart/launch"
    context = json.loads(link["appContext"])
    assert context["card"] == card["uuid"] and context["patient"] == "kc-01" and context["policy"] == "default"


async def test_workup_card_suggests_draft_service_requests(post: Post) -> None:
    card = (await cards_for(post, "20"))[0]
    assert card["indicator"] == "warning" and card["summary"].startswith("Work-up before esketamine: ")
    assert card["selectionBehavior"] == "any"
    resources = [a["resource"] for s in card["suggestions"] for a in s["actions"]]
    codes = {r["code"]["coding"][0]["code"] for r in resources}
    assert "44249-1" in codes  # PHQ-9
    assert all(r["resourceType"] == "ServiceRequest" and r["status"] == "draft" for r in resources)
    assert all(r["subject"] == {"reference": "Patient/kc-20"} for r in resources)
    assert next(s for s in card["suggestions"] if "PHQ-9" in s["label"])["isRecommended"] is True


async def test_not_indicated_card_for_anxiety_alone(post: Post) -> None:
    card = (await cards_for(post, "05"))[0]
    assert card["indicator"] == "warning"
    assert card["summary"] == "Esketamine not indicated: anxiety alone is not an indication"


async def test_cautions_card_gathers_warnings(post: Post) -> None:
    cards = await cards_for(post, "21")
    assert [c["indicator"] for c in cards] == ["warning", "info"]  # a caution is never below an info card
    assert "suicide-risk review" in cards[0]["summary"] and "(+2 more)" in cards[0]["summary"]
    assert "phenelzine" in cards[0]["detail"]


@pytest.mark.parametrize("concept,extra,expected", [
    ({"text": "ketamine 50 mg compounded troche"}, {}, "Compounded/oral ketamine"),
    ({"text": "Ketamine HCl"}, {"dosageInstruction": [{"text": "Dissolve under the tongue at home",
                                                        "route": {"text": "sublingual"}}]}, "Sublingual/at-home"),
])
async def test_compounded_or_home_ketamine_gets_the_fda_warning(post: Post, concept: dict[str, Any],
                                                                 extra: dict[str, Any], expected: str) -> None:
    cards = await cards_for(post, "01", orders=[draft_order("kc-01", concept=concept, **extra)])
    fda = [c for c in cards if "FDA" in c["summary"]]
    assert len(fda) == 1 and fda[0]["indicator"] == "warning" and fda[0]["summary"].startswith(expected)
    assert "2023" in fda[0]["source"]["label"]
    assert cards[-1]["summary"].startswith("Ketamine: criteria met")  # info, after the FDA warning


async def test_esketamine_at_a_certified_setting_gets_no_fda_card(post: Post) -> None:
    cards = await cards_for(post, "01")
    assert not any("FDA" in c["summary"] for c in cards)


async def test_orders_that_are_not_ketamine_get_no_cards(post: Post) -> None:
    sertraline = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437",
                              "display": "sertraline"}]}
    r = await post("ketamine-order-sign", hook_request("10", orders=[draft_order("kc-10", concept=sertraline)]))
    assert r.json() == {"cards": []}


async def test_order_select_acts_only_on_the_selected_orders(post: Post) -> None:
    sertraline = draft_order("kc-10", "draft-2", concept={"text": "sertraline 50 mg"})
    ketamine = draft_order("kc-10", "draft-1")
    body = hook_request("10", hook="order-select", orders=[ketamine, sertraline],
                        selections=["MedicationRequest/draft-2"])
    assert (await post("ketamine-order-select", body)).json() == {"cards": []}
    body = hook_request("10", hook="order-select", orders=[ketamine, sertraline],
                        selections=["MedicationRequest/draft-1"])
    assert (await post("ketamine-order-select", body)).json()["cards"][0]["indicator"] == "critical"


@pytest.mark.parametrize("concept", [
    {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2119365"}]},
    {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "50458-028-03"}]},
    {"text": "Ketalar 10 mg/mL injection"},
    {"text": "ESKETAMINE 28MG SOLN,SPRAY,NASAL"},
])
async def test_ketamine_orders_are_recognised_by_code_or_name(post: Post, concept: dict[str, Any]) -> None:
    cards = await cards_for(post, "10", orders=[draft_order("kc-10", concept=concept)])
    assert cards[0]["indicator"] == "critical"


async def test_patient_view_is_silent_unless_ketamine_therapy_is_active(post: Post) -> None:
    r = await post("ketamine-patient-view", hook_request("01", hook="patient-view"))
    assert r.json() == {"cards": []}
    body = hook_request("01", hook="patient-view")
    body["prefetch"]["medicationStatements"]["entry"].append({"resource": {
        "resourceType": "MedicationStatement", "id": "spravato", "status": "active",
        "subject": {"reference": "Patient/kc-01"}, "effectivePeriod": {"start": "2026-10-01"},
        "medicationCodeableConcept": {"text": "Spravato 56 mg"}}})
    cards = (await post("ketamine-patient-view", body)).json()["cards"]
    # A course on record for a month: the card leads with it. No PHQ-9 before its start, so its indication and
    # benefit need work-up (a warning), never a silent "active therapy".
    assert len(cards) == 1 and cards[0]["indicator"] == "warning"
    assert cards[0]["summary"].startswith("Esketamine course, week 5: no PHQ-9 before the first dose"), cards
    assert "Severity unknown: no PHQ-9 in the 30 days before the first dose (2026-10-01)" in cards[0]["detail"]


@pytest.mark.parametrize("fixture", ["01", "09", "10", "11", "12", "16", "17", "21", "29", "32"])
async def test_cards_cite_only_primary_sources(post: Post, fixture: str) -> None:
    from urllib.parse import urlsplit

    from ..eligibility.test_policy import PRIMARY_HOSTS

    cards = (await post("ketamine-order-sign", hook_request(fixture))).json()["cards"]
    for card in cards:
        source = card["source"]
        assert "WEAK" not in source["label"] and "UNVERIFIED" not in source["label"]
        assert "url" not in source or urlsplit(source["url"]).hostname in PRIMARY_HOSTS, source


async def test_card_detail_has_no_unresolved_source_markers(post: Post) -> None:
    import re

    for fixture in ("01", "10", "20", "21"):
        for card in (await post("ketamine-order-sign", hook_request(fixture))).json()["cards"]:
            assert not re.search(r"\[S\d+\]", card.get("detail", "")), card["summary"]
    candidate = (await post("ketamine-order-sign", hook_request("01"))).json()["cards"][0]
    assert "dailymed.nlm.nih.gov" in candidate["detail"] and "accessdata.fda.gov" in candidate["detail"]


@pytest.mark.parametrize("fixture", ["10", "05"])  # contraindicated; not indicated (anxiety alone)
async def test_a_card_against_the_order_offers_to_remove_the_draft_order(post: Post, fixture: str) -> None:
    card = (await cards_for(post, fixture))[0]
    (suggestion,) = card["suggestions"]
    assert suggestion["isRecommended"] is True
    assert suggestion["actions"] == [{"type": "delete", "resourceId": "MedicationRequest/draft-1",
                                      "description": "Remove the draft order MedicationRequest/draft-1"}]


async def test_several_draft_orders_can_each_be_removed(post: Post) -> None:
    orders = [draft_order("kc-10", "draft-1"), draft_order("kc-10", "draft-2", concept={"text": "Ketalar 10 mg/mL"})]
    card = (await cards_for(post, "10", orders=orders))[0]
    assert card["selectionBehavior"] == "any"
    assert [s["actions"][0]["resourceId"] for s in card["suggestions"]] == ["MedicationRequest/draft-1",
                                                                             "MedicationRequest/draft-2"]


async def test_the_fda_card_offers_to_remove_the_compounded_order_without_pressing_it(post: Post) -> None:
    cards = await cards_for(post, "01", orders=[draft_order("kc-01", concept={"text": "ketamine 50 mg troche"})])
    (fda,) = [c for c in cards if "FDA" in c["summary"]]
    assert [s["isRecommended"] for s in fda["suggestions"]] == [False]
    assert {r["code"] for r in fda["overrideReasons"]} >= {"monitored-protocol"}


@pytest.mark.parametrize(("fixture", "expected"), [
    ("10", "diagnosis-not-current"),  # a bipolar diagnosis can be historical or ruled out
    ("05", "trials-documented-elsewhere"),  # trials from another health system are not in this chart
    ("20", "workup-done-elsewhere"),  # work-up done but not yet resulted here
])
async def test_override_reasons_are_the_ones_a_clinician_would_pick_for_that_card(
        post: Post, fixture: str, expected: str) -> None:
    from cds_hooks import OVERRIDE_REASONS

    card = (await cards_for(post, fixture))[0]
    codes = [r["code"] for r in card["overrideReasons"]]
    assert codes[0] == expected and len(codes) <= 4
    assert all(r["display"] == OVERRIDE_REASONS[r["code"]] for r in card["overrideReasons"])


async def _select_then_sign(post: Post, fixture: str, *, sign_orders: list[dict[str, Any]] | None = None,
                            patient: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pid = patient or f"kc-{fixture}"
    select = hook_request(fixture, hook="order-select", orders=[draft_order(pid)])
    shown = (await post("ketamine-order-select", select)).json()["cards"]
    sign = hook_request(fixture, orders=sign_orders or [draft_order(pid)])
    return shown, (await post("ketamine-order-sign", sign)).json()["cards"]


async def test_order_sign_does_not_repeat_cards_order_select_just_showed(post: Post) -> None:
    shown, signed = await _select_then_sign(post, "21")  # a caution (warning) and criteria met (info)
    assert [c["indicator"] for c in shown] == ["warning", "info"]
    assert signed == []


async def test_critical_cards_are_always_shown_again_at_sign(post: Post) -> None:
    shown, signed = await _select_then_sign(post, "10")
    assert [c["summary"] for c in signed] == [c["summary"] for c in shown]
    assert signed[0]["indicator"] == "critical"


async def test_a_changed_or_different_draft_order_gets_its_cards_at_sign(post: Post) -> None:
    _, signed = await _select_then_sign(post, "21", sign_orders=[draft_order("kc-21", "draft-9")])
    assert [c["indicator"] for c in signed] == ["warning", "info"]


async def test_the_repeat_window_is_configurable_and_zero_always_repeats(settings, keys) -> None:  # type: ignore[no-untyped-def]
    from .conftest import BASE, close_app, make_client

    settings.cds.repeat_window_s = 0
    async with make_client(settings) as client:
        async def post0(service: str, body: Any) -> Any:
            path = f"/cds-services/{service}"
            return await client.post(path, json=body, headers={"Authorization": f"Bearer {keys.token(BASE + path)}"})
        shown, signed = await _select_then_sign(post0, "21")
        await close_app(client)
    assert [c["summary"] for c in signed] == [c["summary"] for c in shown]


def _dosed(pid: str, mg: float) -> dict[str, Any]:
    return draft_order(pid, dosageInstruction=[{"text": f"{mg:g} mg intranasal", "doseAndRate": [
        {"doseQuantity": {"value": mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]}])


@pytest.mark.parametrize(("fixture", "mg", "why"), [
    ("01", 84, "84 mg per session: the label's first dose is 56 mg"),      # first start, under 65
    ("21", 56, "56 mg per session: at 65 or older the label starts at 28 mg"),  # first start, age 70
    ("41", 70, "70 mg per session: the label's doses are 56 or 84 mg"),     # in a course
])
async def test_an_esketamine_dose_outside_the_label_is_warned(post: Post, fixture: str, mg: float, why: str) -> None:
    pid = f"kc-{fixture}"
    cards = await cards_for(post, fixture, orders=[_dosed(pid, mg)])
    (dose,) = [c for c in cards if c["summary"].startswith("Esketamine dose outside the label")]
    assert dose["summary"] == f"Esketamine dose outside the label: {why}"[:89].rstrip() + (
        "…" if len(f"Esketamine dose outside the label: {why}") > 90 else "")
    assert dose["indicator"] == "warning" and "EU SmPC" in dose["detail"]


@pytest.mark.parametrize(("fixture", "mg"), [("01", 56), ("41", 84), ("41", 56), ("21", 28)])
async def test_a_label_dose_gets_no_dose_card(post: Post, fixture: str, mg: float) -> None:
    cards = await cards_for(post, fixture, orders=[_dosed(f"kc-{fixture}", mg)])
    assert not [c for c in cards if c["summary"].startswith("Esketamine dose outside the label")]


async def test_an_unreadable_antidepressant_order_is_explained_clinically(post: Post) -> None:
    """Issue 18 item 7: two failed trials on record, yet resistance unknown, and the card says why in clinical words."""
    card = (await cards_for(post, "31"))[0]
    assert ("Treatment resistance unknown: 2 adequate antidepressant trials without response on record, but an "
            "antidepressant order whose drug could not be read may be a more recent trial") in card["detail"]

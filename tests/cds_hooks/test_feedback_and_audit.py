"""Feedback is validated and stored once; the audit log has hashed patient ids and never a token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ketamine_cds.cli import main
from ketamine_cds.settings import CdsClientSettings, Settings

from .conftest import BASE, ISSUER, Keys, Post, close_app, hook_request, make_client

OTHER_ISSUER = "https://another-ehr.test"

pytestmark = pytest.mark.anyio


async def issue_card(post: Post, fixture: str = "10") -> dict:  # type: ignore[type-arg]
    return (await post("ketamine-order-sign", hook_request(fixture))).json()["cards"][0]


async def test_feedback_is_stored_once_even_under_concurrent_posts(post: Post, settings: Settings) -> None:
    card = await issue_card(post)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z",
            "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "discussed with psychiatry"}}
    responses = await asyncio.gather(*[
        post("ketamine-order-sign", {"feedback": [item]}, path_suffix="/feedback") for _ in range(8)])
    assert {r.status_code for r in responses} == {200}
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-01T10:05:00Z",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    assert (await post("ketamine-order-sign", {"feedback": [accepted, item]},
                       path_suffix="/feedback")).status_code == 200
    import sqlite3

    with sqlite3.connect(settings.cds.feedback_db) as db:
        rows = db.execute("SELECT outcome, override_code, hook_instance, issuer FROM feedback "
                          "ORDER BY outcome").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("accepted", None), ("overridden", card["overrideReasons"][0]["code"])]
    assert rows[0][2] is not None and rows[0][3] == "https://ehr.test"  # matched to the issued card


@pytest.mark.parametrize("body", [
    {},
    {"feedback": []},
    {"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "2026-11-01T10:00:00Z"}]},
    {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2026-11-01T10:00:00Z"}]},
    {"feedback": [{"outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z"}]},
])
async def test_invalid_feedback_is_400(post: Post, body: dict) -> None:  # type: ignore[type-arg]
    r = await post("ketamine-order-sign", body, path_suffix="/feedback")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


async def test_feedback_report(post: Post, settings: Settings, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    card = await issue_card(post)
    await post("ketamine-order-sign", {"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z",
        "overrideReason": {"reason": card["overrideReasons"][1]}}]}, path_suffix="/feedback")
    assert main(["feedback-report", "--config", str(tmp_path / "ketamine-cds.toml")]) == 0
    out = capsys.readouterr().out
    assert "contraindicated" in out and "overridden" in out and "100%" in out
    assert "Chart data is incorrect or out of date" in out


async def test_audit_log_hashes_the_patient_and_never_holds_a_token(post: Post, settings: Settings) -> None:
    body = hook_request("10", fhirServer="https://ehr-fhir.test/r4",
                        fhirAuthorization={"access_token": "SECRET-ACCESS-TOKEN", "token_type": "Bearer",
                                           "expires_in": 60, "scope": "patient/*.read", "subject": "x"})
    r = await post("ketamine-order-sign", body)
    assert r.status_code == 200
    assert settings.cds.audit_log is not None
    lines = [json.loads(line) for line in settings.cds.audit_log.read_text().splitlines()]
    call = next(line for line in lines if line["event"] == "service_call")
    assert call["service"] == "ketamine-order-sign" and call["hookInstance"] == body["hookInstance"]
    assert call["issuer"] == "https://ehr.test" and call["verdict"] == "contraindicated" and call["cards"] == 1
    assert call["latency_ms"] >= 0 and call["data_gaps"] == []
    assert call["patient"] != "kc-10" and len(call["patient"]) == 16
    text = settings.cds.audit_log.read_text()
    assert "SECRET-ACCESS-TOKEN" not in text and "kc-10" not in text and "eyJ" not in text


async def test_issued_cards_are_recorded_by_kind_which_the_ehr_never_sees(post: Post, settings: Settings) -> None:
    import sqlite3

    from .conftest import draft_order

    r = await post("ketamine-order-sign", hook_request("21", orders=[draft_order(
        "kc-21", concept={"text": "ketamine 50 mg compounded troche"})]))
    cards = r.json()["cards"]
    assert all("kind" not in card for card in cards)
    with sqlite3.connect(settings.cds.feedback_db) as db:
        kinds = dict(db.execute("SELECT card_uuid, kind FROM issued_card").fetchall())
    assert sorted(kinds[c["uuid"]] for c in cards) == ["caution", "criteria_met", "fda_warns"]


async def test_feedback_on_a_card_never_issued_is_refused_and_nothing_is_stored(
        post: Post, settings: Settings) -> None:
    card = await issue_card(post)
    good = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z"}
    forged = {**good, "card": "11111111-2222-3333-4444-555555555555"}
    r = await post("ketamine-order-sign", {"feedback": [good, forged]}, path_suffix="/feedback")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    import sqlite3

    with sqlite3.connect(settings.cds.feedback_db) as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0


async def test_feedback_through_another_service_or_from_another_client_is_refused(
        keys: Keys, settings: Settings) -> None:
    # Two trusted EHRs: a card issued to one is not the other's to give feedback on.
    settings.cds.clients.append(CdsClientSettings(issuer=OTHER_ISSUER, jwks_file=settings.cds.clients[0].jwks_file))
    async with make_client(settings) as client:
        async def send(path: str, body: dict, issuer: str = ISSUER) -> int:  # type: ignore[type-arg]
            token = keys.token(BASE + path, iss=issuer)
            r = await client.post(path, content=json.dumps(body).encode(),
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            return r.status_code if r.status_code != 200 or "cards" not in r.json() else r.json()["cards"][0]

        card = await send("/cds-services/ketamine-order-sign", hook_request("10"))
        assert isinstance(card, dict)
        item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z"}
        feedback = "/cds-services/ketamine-order-sign/feedback"
        assert await send("/cds-services/ketamine-order-select/feedback", {"feedback": [item]}) == 400
        assert await send(feedback, {"feedback": [item]}, OTHER_ISSUER) == 400
        assert await send(feedback, {"feedback": [item]}) == 200
        await close_app(client)


async def test_an_override_reason_without_display_stores_the_code_and_reports_our_display(
        post: Post, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = await issue_card(post)
    code_only = {"system": card["overrideReasons"][1]["system"], "code": card["overrideReasons"][1]["code"]}
    r = await post("ketamine-order-sign", {"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z",
        "overrideReason": {"reason": code_only}}]}, path_suffix="/feedback")
    assert r.status_code == 200
    assert main(["feedback-report", "--config", str(tmp_path / "ketamine-cds.toml")]) == 0
    out = capsys.readouterr().out
    assert "Chart data is incorrect or out of date" in out and "None" not in out

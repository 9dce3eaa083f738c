"""The demo judges as of its day: started on another day than the fixtures' own (2026-11-01), it moves every chart
there, and every patient gets, through the sandbox EHR and the CDS service, the answer ``evaluate`` gives on the
unmoved chart at 2026-11-01. The session scenarios, the chart and the SMART app's header go by the same day."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from eligibility import assess_pool, assessment_to_json, load_policy
from fhir_mapping import read_path
from ketamine_cds.demo import FIXTURES_DAY, banner_line, build_demo, demo_patients, demo_settings, verdict_table

from ..conftest import fixture_bundles, free_port
from ..stack import Stack, launch_from_chart, serving, text_of
from .test_faces_agree import _from_card, _summary

pytestmark = pytest.mark.integration

#: Another day than the fixtures' own: five weeks and a day later, across a month's end.
DEMO_DAY = dt.date(2026, 12, 7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("demo-dates")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = build_demo(port, work, as_of=DEMO_DAY, configure_logging=False)
    try:
        with serving(app, port):
            yield Stack(base, app, app.state.sandbox, demo_settings(base, work))
    finally:
        app.state.storage.close()


def _response_json(page_html: str) -> dict[str, object]:
    pre = re.search(r"<h3>Response \(HTTP \d+\)</h3><pre class=\"json\">(.*?)</pre>", page_html, re.S)
    assert pre is not None, "the chart shows no CDS response"
    body: dict[str, object] = json.loads(html.unescape(pre.group(1)))
    return body


def test_the_demo_judges_on_its_day_and_moved_the_fixtures_there(demo: Stack) -> None:
    assert demo.app.state.clock.today() == DEMO_DAY
    assert demo.sandbox.shift_days == (DEMO_DAY - FIXTURES_DAY).days == 36
    with demo.browser() as browser:
        assert f"today in this EHR: {DEMO_DAY}" in text_of(browser.get("/sandbox/"))


# Every fixture, a searchset with its own OperationOutcome too: the sandbox serves that outcome again with the
# patient's searches (ehr_sandbox/search_outcomes.py), so the demo answers as the file does (issue #20).
@pytest.mark.parametrize("path", fixture_bundles(), ids=lambda p: p.stem)
def test_every_patient_gets_the_verdict_of_its_unmoved_chart_on_the_fixtures_day(demo: Stack, path: Path) -> None:
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    pid = expected["patient"].removeprefix("Patient/")
    unmoved, _ = assess_pool(read_path(path), load_policy("default"), FIXTURES_DAY)
    with demo.browser() as browser:
        page = browser.post("/sandbox/cds", data={"patient": pid, "hook": "order-sign"})
    body = _response_json(page.text)
    cards = body["cards"]
    assert isinstance(cards, list)
    from_card = _from_card(cards)
    # The card's extension carries the assessment's as-of day: the demo's day, not the fixtures'.
    assert cards[0]["extension"]["ketamine-cds"]["as_of"] == str(DEMO_DAY)
    assert from_card == _summary(assessment_to_json(unmoved))
    assert from_card["verdict"] == expected["verdict"]


def test_the_banner_says_the_day_judged_on_and_lists_the_same_verdicts() -> None:
    line = banner_line(len(demo_patients()), DEMO_DAY, pinned=True)
    assert f"{len(fixture_bundles())} synthetic patients" in line
    assert "judged as of 2026-12-07 (pinned with --as-of" in line and "+36 days from 2026-11-01" in line
    assert "judged as of 2026-11-01 (today" in banner_line(1, FIXTURES_DAY, pinned=False)


@pytest.mark.parametrize("day", [DEMO_DAY, dt.date(2028, 2, 29), dt.date(2026, 6, 15)], ids=str)
def test_the_banners_verdicts_on_any_day_are_those_of_the_fixtures_day(day: dt.date) -> None:
    policy = load_policy("default")
    assert verdict_table(policy, day) == verdict_table(policy, FIXTURES_DAY)


def test_unmoved_charts_judged_five_weeks_later_would_tell_other_stories() -> None:
    # Why the demo moves the charts: left as written, a candidate's recent records are five weeks older.
    path = next(p for p in fixture_bundles() if p.stem.startswith("01-"))
    later, _ = assess_pool(read_path(path), load_policy("default"), DEMO_DAY)
    assert later.verdict.value == "needs_workup"


def test_a_discharge_dose_is_50_minutes_before_the_demos_now(demo: Stack) -> None:
    with demo.browser() as browser:
        page = browser.post("/sandbox/session", data={"patient": "kc-01", "action": "discharge-early"})
    text = text_of(page)
    assert "(50 minutes ago)" in text and "discharge not before" in text


def test_a_session_is_booked_for_the_day_after_the_demos_day(demo: Stack) -> None:
    with demo.browser() as browser:
        page = browser.post("/sandbox/session", data={"patient": "kc-01", "action": "book"})
    request = re.search(r"<h3>Request</h3><pre class=\"json\">(.*?)</pre>", page.text, re.S)
    assert request is not None
    appointment = json.loads(html.unescape(request.group(1)))["context"]["appointments"]["entry"][0]["resource"]
    assert appointment["start"].startswith(f"{DEMO_DAY + dt.timedelta(days=1)}T09:00:00")


def test_the_smart_apps_header_says_the_day_the_assessment_is_judged_on(demo: Stack) -> None:
    with demo.browser() as browser:
        page = launch_from_chart(demo, browser, "kc-41")
    assert page.status_code == 200
    header = re.search(r'<small class="judged-on" id="judged-on">(.*?)</small>', page.text, re.S)
    assert header is not None and text_of_fragment(header.group(1)) == f"judged as of {DEMO_DAY}"
    # The course patient's chart was moved with the day: the app sees a current course (continue).
    assert "Continue the course" in text_of(page)


def text_of_fragment(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()

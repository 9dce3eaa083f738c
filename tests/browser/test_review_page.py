"""The review page as clinicians see it, in Chromium: each verdict at 1280 px and 700 px (charts) and 600 px
(tables), axe-core finding no accessibility violation, evidence opening in place, the card's section on arrival,
and a one-page printed summary. A screenshot of each verdict goes to artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..stack import Stack, running_stack
from .chromium import launch, needs_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
pytestmark = [pytest.mark.integration, needs_chromium]
VERDICTS = {"kc-01": "Candidate", "kc-20": "Needs work-up", "kc-05": "Not indicated", "kc-10": "Contraindicated",
            "kc-41": "Continue the course", "kc-42": "Reassess"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("review")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch(p)
        try:
            yield chromium
        finally:
            chromium.close()


def open_review(stack: Stack, browser: Any, patient: str, width: int = 1280) -> Any:
    """EHR launch from the sandbox chart; then the app's own URL in a tab of the same browser."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    chart = context.new_page()
    chart.goto(f"{stack.base}/sandbox/?patient={patient}")
    chart.click("#launch-app")
    expect(chart.frame_locator("#app-frame").locator("#verdict")).to_be_visible(timeout=20_000)
    url = chart.frame_locator("#app-frame").locator("html").evaluate("() => location.href")
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(url)
    return page


def axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)" for v in results.response["violations"]]


@pytest.mark.parametrize("patient", list(VERDICTS))
@pytest.mark.parametrize("width", [1280, 700])
def test_each_verdict_reads_at_a_glance_with_no_accessibility_violation(
        stack: Stack, browser: Any, patient: str, width: int) -> None:
    from playwright.sync_api import expect

    page = open_review(stack, browser, patient, width)
    verdict = page.locator("#verdict")
    expect(verdict).to_contain_text(VERDICTS[patient])
    box = verdict.bounding_box()
    assert box is not None and box["y"] + 40 < 800  # the verdict starts above the fold
    expect(page.locator("#verdict .findings li").first).to_be_visible()
    # Charts at 700 px and wider, drawn at a readable size.
    timeline = page.locator("#timeline svg")
    if page.locator("#timeline svg").count():
        expect(timeline).to_be_visible()
        assert timeline.bounding_box()["width"] >= 600  # type: ignore[index]
    # Honest negatives: nothing is called "absent" on the page.
    assert "absent" not in page.locator("main").inner_text().lower()
    assert page.locator("a[href*='/fhir/']").count() == 0  # no raw FHIR URL to strand the user in the frame
    assert axe_violations(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"review-{VERDICTS[patient].lower().replace(' ', '-')}-{width}px.png"),
                    full_page=True)
    page.context.close()


def test_a_contraindicated_patient_sees_the_checklist_first_and_present_rows_first(
        stack: Stack, browser: Any) -> None:
    page = open_review(stack, browser, "kc-10")
    y = {name: page.locator(f"#{name}").bounding_box()["y"] for name in ("verdict", "checklist", "trials", "bp")}
    assert y["verdict"] < y["checklist"] < y["trials"] < y["bp"]
    statuses = page.locator("table.checklist tbody .status").all_inner_texts()
    order = {"present": 0, "unknown": 1}
    assert [order.get(s, 2) for s in statuses] == sorted(order.get(s, 2) for s in statuses)
    assert statuses[0] == "present" and "none on record" in statuses
    page.context.close()


def test_evidence_opens_in_place_with_what_when_status_and_source(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_review(stack, browser, "kc-10")
    evidence = page.locator("#verdict details.ev").first
    evidence.locator("summary").click()
    details = evidence.locator("dl")
    expect(details).to_be_visible()
    text = details.inner_text()
    assert "Bipolar" in text and "active" in text and "Condition/kc-10-cond2" in text
    assert "ago" in evidence.locator("summary").inner_text()  # relative date beside the absolute one
    page.context.close()


def test_the_charts_draw_the_policy_threshold_bands_and_limits(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_review(stack, browser, "kc-11")
    timeline = page.locator("#timeline svg")
    expect(timeline.locator("text", has_text="policy threshold 10")).to_have_count(1)
    expect(timeline.locator("text", has_text="moderately severe")).to_have_count(1)
    expect(timeline.locator("text", has_text="adequate trial")).to_have_count(1)  # the legend
    expect(timeline.locator("text", has_text="PHQ-9 ")).not_to_have_count(0)
    bp = page.locator("#bp-chart svg")
    expect(bp.locator("text", has_text="mmHg")).not_to_have_count(0)
    expect(bp.locator("text", has_text="140 systolic limit")).to_have_count(1)
    expect(bp.locator("text", has_text="latest 148/96 mmHg (20 Oct 2026)")).to_have_count(1)
    page.context.close()


def test_below_700_px_the_tables_replace_the_charts(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_review(stack, browser, "kc-11", width=600)
    expect(page.locator("#timeline")).to_be_hidden()
    expect(page.locator("#bp-chart")).to_be_hidden()
    expect(page.locator(".narrow-only table[aria-label='Blood pressure readings']")).to_be_visible()
    expect(page.locator(".narrow-only table[aria-label='Scores']")).to_be_visible()
    assert axe_violations(page) == []
    page.context.close()


def test_the_app_opened_from_a_card_shows_the_card_and_lands_on_its_section(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    chart = context.new_page()
    chart.goto(f"{stack.base}/sandbox/?patient=kc-10")
    chart.click("#sign-order")
    chart.locator("button.card-link").first.click()
    frame = chart.frame_locator("#app-frame")
    expect(frame.locator("#from-card")).to_contain_text("Esketamine: bipolar disorder on record", timeout=20_000)
    expect(frame.locator("#checklist")).to_be_in_viewport()
    expect(chart.locator("#cards article").first).to_be_visible()  # the cards stay beside the app
    context.close()


def test_the_printed_summary_is_one_page_without_navigation(stack: Stack, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_review(stack, browser, "kc-10")
    page.emulate_media(media="print")
    expect(page.locator("header.print-only")).to_be_visible()
    expect(page.locator("header.print-only")).to_contain_text("printed")
    expect(page.locator(".toolbar form")).to_be_hidden()
    expect(page.locator("#references")).to_be_visible()
    pdf = page.pdf(format="A4", margin={"top": "12mm", "bottom": "12mm", "left": "12mm", "right": "12mm"})
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "review-contraindicated-print.pdf").write_bytes(pdf)
    assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>") <= 1
    page.context.close()

"""A real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright. It opens the sandbox chart,
launches the app inside the chart's iframe (an EHR launch), and checks that the verdict, the trial timeline and the
blood-pressure chart show the fixture's numbers. A screenshot of the review page goes to artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..stack import Stack, running_stack
from .chromium import launch, needs_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
pytestmark = [
    pytest.mark.integration,
    needs_chromium,
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("browser")) as s:
        yield s


def test_ehr_launch_in_the_chart_iframe_renders_the_review(stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            page = context.new_page()
            page.goto(f"{stack.base}/sandbox/?patient=kc-11")
            expect(page.locator("section[aria-label=Patient]")).to_contain_text("Jonas Schmidt")
            page.click("#launch-app")
            frame = page.frame_locator("#app-frame")
            verdict = frame.locator("#verdict")
            expect(verdict).to_contain_text("Contraindicated", timeout=20_000)
            expect(verdict).to_contain_text("Uncontrolled hypertension")
            # The timeline: one bar per trial, labelled with the fixture's drugs and doses.
            timeline = frame.locator("#timeline svg")
            expect(timeline).to_be_visible()
            expect(timeline.locator("text", has_text="sertraline · 150 mg/d")).to_have_count(1)
            expect(timeline.locator("text", has_text="escitalopram · 20 mg/d")).to_have_count(1)
            expect(timeline.locator("rect.trial")).to_have_count(2)
            # The BP chart: the fixture's readings 152/94 and 148/96, and the 140 limit line.
            bp = frame.locator("#bp-chart svg")
            expect(bp).to_be_visible()
            titles = bp.locator("circle title").all_text_contents()
            assert any(t.endswith("systolic 152") for t in titles) and any(t.endswith("diastolic 96") for t in titles)
            expect(bp.locator("text", has_text="140 systolic limit")).to_have_count(1)
            # Keyboard use: the policy selector and its button are reachable by Tab.
            frame.locator("#policy").focus()
            page.keyboard.press("Tab")
            assert frame.locator("button:focus").inner_text() == "Apply"
            page.screenshot(path=str(ARTIFACTS / "review-in-chart.png"), full_page=True)
            url = frame.locator("html").evaluate("() => location.href")
            # Another tab of the same browser shares the binding cookie: the review opens there too...
            app_page = context.new_page()
            app_page.goto(url)
            expect(app_page.locator("#verdict")).to_contain_text("Contraindicated")
            app_page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
            # ...but another browser (a fresh context, no cookie) holding the URL gets nothing.
            stranger = browser.new_page()
            stranger.goto(url)
            expect(stranger.locator("h1")).to_have_text("Your sign-in has ended")
        finally:
            browser.close()


@pytest.mark.parametrize("width", [700, 1400])
def test_the_app_opened_from_a_card_is_usable_at_a_narrow_window(stack: Stack, width: int) -> None:
    """Under ~1000 px the app goes below the cards (at 700 px the split once left the app's frame 40 px wide);
    wider, cards and app stay side by side."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
            page.goto(f"{stack.base}/sandbox/?patient=kc-10")
            page.click("#sign-order")
            page.locator("button.card-link").first.click()
            expect(page.frame_locator("#app-frame").locator("#verdict")).to_be_visible(timeout=20_000)
            frame, cards = page.locator("#app-frame").bounding_box(), page.locator("#cards").bounding_box()
            main = page.locator("main").bounding_box()
            assert frame is not None and cards is not None and main is not None
            if width < 1000:
                assert frame["width"] >= 0.9 * (main["width"] - 32), (frame, main)  # the chart's width, less padding
                assert frame["y"] >= cards["y"] + cards["height"], (frame, cards)  # below the cards
            else:
                assert frame["x"] >= cards["x"] + cards["width"] and frame["width"] >= 500, (frame, cards)
            page.screenshot(path=str(ARTIFACTS / f"card-and-app-{width}px.png"), full_page=True)
        finally:
            browser.close()

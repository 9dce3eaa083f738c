"""FHIR text placed in card Markdown is literal text (issue 21 item 5): whatever a chart writes, a card rendered as an
EHR renders it (CommonMark, and GFM's bare-URL linking) holds no link, image or HTML of the chart's making, no block
(heading, list, rule, quote, code block) that the card did not write, and reads exactly what the chart wrote."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from cds_hooks.markdown import markdown_prose, markdown_text

from .conftest import Post, hook_request

pytest.importorskip("linkify_it")  # GFM's bare-URL linking, as markdown-it's linkify does it

#: A renderer as an EHR's: CommonMark with raw HTML off, plus GFM's tables, strikethrough and linkified bare URLs
#: (www., a scheme, an e-mail address; GFM does not link a bare domain).
_GFM = MarkdownIt("gfm-like", {"html": False})
assert _GFM.linkify is not None
_GFM.linkify.set({"fuzzy_link": False})
_COMMONMARK_HTML = MarkdownIt("commonmark")  # raw HTML on: the strictest test of what the text could smuggle

#: Text made of what Markdown gives a meaning to, with words, URLs and line breaks between.
_MARKUP = st.sampled_from([
    "[", "]", "(", ")", "!", "<", ">", "*", "_", "`", "~", "|", "#", "-", "+", "=", ".", ":", "/", "\\", "&", "@",
    "1.", "2)", "---", "***", "```", "~~~", "    ", "\n", "\n\n", "\t", " ", "www.", "https://", "//", "mailto:",
    "&amp;", "&#91;", "<img src=x onerror=alert(1)>", "[x](https://evil.example)", "![i](http://e/i.png)",
    "<https://evil.example>", "[x]: https://evil.example", "evil.example", "a@evil.example", "a_b", "_a_",
    "not_authorized_scope", "Xanax 0.5 mg", "\u00a0", "é",
])
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_CHART_TEXT = st.lists(st.one_of(_MARKUP, st.text(max_size=8)), min_size=1, max_size=25).map("".join).filter(
    lambda s: _CONTROL.sub("", s).split() != [])


def _as_written(chart: str) -> str:
    """What the card should show of ``chart``: its words, one space apart, without control characters (and without
    backticks, which a code span cannot hold)."""
    return " ".join(_CONTROL.sub("", chart).split()).replace("`", "")


def _inline_children(item: str, md: MarkdownIt) -> list[Token]:
    """The tokens of one list item ``- {item}``; fails unless it is exactly one paragraph of one inline run."""
    tokens = md.parse(f"- {item}")
    assert [t.type for t in tokens] == ["bullet_list_open", "list_item_open", "paragraph_open", "inline",
                                        "paragraph_close", "list_item_close", "bullet_list_close"], item
    return tokens[3].children or []


@pytest.mark.parametrize("escape", [markdown_prose, markdown_text], ids=["prose", "text"])
@settings(max_examples=400, deadline=None)
@given(chart=_CHART_TEXT)
def test_chart_text_in_a_card_is_text_and_reads_as_written(escape: Callable[..., str], chart: str) -> None:
    literal = escape(chart, 100_000)
    for md in (_GFM, _COMMONMARK_HTML):
        children = _inline_children(literal, md)
        kinds = {t.type for t in children}
        assert kinds <= {"text", "code_inline"}, (chart, literal, kinds)  # no link, image, HTML, emphasis, break
        shown = "".join(t.content for t in children)
        assert shown.replace("`", "") == _as_written(chart), (chart, literal)


def test_prose_keeps_numbers_dates_and_codes_as_written() -> None:
    sentence = "Current alprazolam 0.5 mg (a benzodiazepine): monitor; 2026-11-01, not_authorized_scope"
    assert markdown_prose(sentence) == sentence


def test_long_chart_text_is_cut() -> None:
    assert len(markdown_prose("x" * 50_000)) == 1000


def _with_display(body: dict[str, Any], display: str) -> dict[str, Any]:
    """The request with every coded concept of its prefetch (conditions, medications) displayed as ``display``."""
    for value in body["prefetch"].values():
        for entry in (value.get("entry") or []) if isinstance(value, dict) else []:
            for key in ("code", "medicationCodeableConcept"):
                concept = entry["resource"].get(key)
                if isinstance(concept, dict):
                    concept["text"] = display
                    for coding in concept.get("coding", []):
                        coding["display"] = display
    return body


_HOSTILE = "[click](https://evil.example/x) <img src=x onerror=alert(1)> ![i](http://e/i.png) www.evil.example"


def _links_and_images(detail: str) -> list[str]:
    html = _GFM.render(detail)
    return re.findall(r'<a href="([^"]*)"', html) + re.findall(r"<img[^>]*>", html)


@pytest.mark.anyio
@pytest.mark.parametrize(("fixture", "order"), [
    ("10", "Spravato 56 MG Nasal Spray Kit"),            # the bipolar diagnosis's display, on the critical card
    ("09", "Spravato 56 MG Nasal Spray Kit"),            # the psychosis's display
    ("01", "compounded oral ketamine troche " + _HOSTILE),  # the draft order's own text, on the FDA warning card
])
async def test_a_chart_cannot_put_a_link_into_an_order_card(post: Post, fixture: str, order: str) -> None:
    body = _with_display(hook_request(fixture), _HOSTILE)
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {"text": order}
    r: httpx.Response = await post("ketamine-order-sign", body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert any("evil.example" in c.get("detail", "") for c in cards), json.dumps(cards)[:2000]  # shown as text …
    for card in cards:  # … never as a link or an image: every link on a card is one of our cited sources
        assert all(not found.startswith("<img") and "evil" not in found and "e/i.png" not in found
                   for found in _links_and_images(card["detail"])), card["detail"]

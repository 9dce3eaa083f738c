"""Text from the chart placed in a card's Markdown ``detail`` as literal text, so that a chart cannot put a link, an
image or HTML into a card (an EHR renders ``detail`` as GitHub-flavoured Markdown and the clinician trusts it).

Two strengths, for two kinds of text:

- :func:`markdown_text` for a short chart string set on its own (a drug's name on a session card): every character
  CommonMark gives a meaning to is escaped;
- :func:`markdown_prose` for the core's sentences, which quote the chart ("Current Xanax 1 mg (a benzodiazepine):
  …", a condition's display, a free-text problem): only what can make a link, an image, HTML, an entity, a code
  span, emphasis, a table or a block is escaped, so that the sentence still reads as written in the raw text
  (numbers, dates, parentheses, hyphens, codes with underscores).

In both, a run a renderer would link by itself (``https://…``, ``www.…``, an e-mail address) is set in a code span,
line breaks are flattened (a chart's newline cannot start a heading, a list or a block quote) and long text is cut.
A reference inside a code span of ours uses :func:`markdown_code` (escapes do not work there).
"""

from __future__ import annotations

import re

# Every character CommonMark gives a meaning to (links, emphasis, code, HTML, entities, headings, lists, tables).
_EVERY_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.:!|~&])")
# What can open a link or image ("[", "]"), HTML or an autolink ("<", ">"), an entity ("&"), a code span, emphasis,
# a table cell or a strikethrough. An underscore between ASCII letters or digits ("not_authorized_scope") cannot
# emphasise: it is left as it is, so that codes read as written.
_INLINE_SPECIAL = re.compile(r"[\\`*\[\]<>|~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What a GFM renderer (or a linkifier) makes a link without any markup: a URL with a scheme or protocol-relative,
# "www.", an e-mail address. Escapes do not stop every linkifier (some run on the text after escapes are read), so
# such a run is set in a code span, which none links, and reads as written.
_BARE_LINK = re.compile(r"(?i)(?:[a-z][a-z0-9+.\-]*:)?//\S*|www\.\S*|[^\s@]+@[^\s@]+")
# What starts a block at the head of a line or list item: a heading, a list item, a thematic break or setext line.
_BLOCK_START = re.compile(r"^([#+=-]|[0-9]{1,9}(?=[.)]))")
# Control characters (a NUL a renderer shows as U+FFFD): no meaning in a card; whitespace is flattened apart.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
#: The longest prose placed in a card from one value (a chart's display can be any size).
PROSE_MAX = 1000


def _flat(value: str, limit: int) -> str:
    flat = " ".join(_CONTROL.sub("", value).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _literal(flat: str, escape: re.Pattern[str]) -> str:
    """``flat`` as literal Markdown: runs a renderer would link in code spans, the rest escaped by ``escape``."""
    parts, at = [], 0
    for link in _BARE_LINK.finditer(flat):
        parts.append(escape.sub(lambda m: "\\" + m.group(0), flat[at:link.start()]))
        code = link.group(0).replace("`", "")
        parts.append(f"`{code}`" if code else "")
        at = link.end()
    parts.append(escape.sub(lambda m: "\\" + m.group(0), flat[at:]))
    return "".join(parts)


def markdown_text(value: str, limit: int = 120) -> str:
    """FHIR text (a drug's name as the chart wrote it) as literal Markdown: every special character escaped and line
    breaks flattened, so that a chart cannot put a link, an image or HTML into a card; cut at ``limit``."""
    return _literal(_flat(value, limit), _EVERY_SPECIAL)


def markdown_code(value: str, limit: int = 120) -> str:
    """Text for inside a code span (a record reference): backslash escapes do not work there, so a backtick, which
    would end the span, is removed instead."""
    return _flat(value, limit).replace("`", "")


def markdown_prose(value: str, limit: int = PROSE_MAX) -> str:
    """A sentence of the core that may quote the chart, as literal Markdown that still reads as written (see the
    module's docstring); cut at ``limit``. It may open a line or a list item: a leading "#", "-", "+", "=" or "1." is
    escaped too."""
    escaped = _literal(_flat(value, limit), _INLINE_SPECIAL)
    block = _BLOCK_START.match(escaped)
    if block is None:
        return escaped
    if block.group(0).isdigit():  # "1." or "1)": the delimiter after the number is escaped
        end = block.end()
        return escaped[:end] + "\\" + escaped[end:]
    return "\\" + escaped

"""Questionnaire scores (PHQ-9 total and item 9, GAD-7) as EHRs record them: a number, an integer string or a LOINC
answer code; on an Observation, a PHQ-9 panel's components, one Observation per item, or a QuestionnaireResponse.
With no total recorded, the sum of the nine items (issue #20)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from ._json import arr, codings, obj, text
from .codesets import CodeSets, system_key
from .dates import parse_day
from .facts import COMPUTED_FROM_ITEMS, ObservationGroup, ObservationKind, ScoreFact, SkippedEntry
from .loading import ResourcePool
from .values import number_value, subject_key

# An item score sent as text: "12", " 3 " (US Core's PHQ-9 total is "valueString": "12"); anything else is not read.
_INTEGER_TEXT = re.compile(r"^\s*\+?\d{1,3}\s*$")
_SCORE_RANGES = {
    ObservationKind.PHQ9_TOTAL: (0, 27),
    ObservationKind.PHQ9_ITEM9: (0, 3),
    ObservationKind.GAD7_TOTAL: (0, 21),
}
#: The groups whose Observations are scores, each of the kind of the same name.
SCORE_GROUPS = frozenset({ObservationGroup.PHQ9_TOTAL, ObservationGroup.PHQ9_ITEM9, ObservationGroup.GAD7_TOTAL})
#: The nine PHQ-9 items (clinical.md §5 [S37]): items 1-8 (observation_codes.toml ``phq9_item``) and item 9.
ITEM9 = "44260-8"
PHQ9_ITEMS = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", ITEM9)
TOTAL_CODES = frozenset({"44261-6", "89204-2"})


def item_code(res: Any) -> str | None:
    """The LOINC code of a PHQ-9 item or total, as an Observation or component carries it."""
    for c in codings(obj(res, "code")):
        code = text(c, "code").strip()
        if code in PHQ9_ITEMS or code in TOTAL_CODES:
            return code
    return None


class PanelItems:
    """PHQ-9 items seen one by one, grouped into administrations: by the panel that lists them as members
    (``hasMember``), else by the instant they were taken. A group with all nine items and no total recorded gets
    the sum as its total (issue #20)."""

    def __init__(self) -> None:
        self._member_of: dict[str, str] = {}
        self._groups: dict[str, dict[str, tuple[float | None, str, dt.date]]] = {}
        self._has_total: set[str] = set()
        self._pending: list[tuple[dict[str, Any], str, float | None, dt.date]] = []

    def panel(self, res: dict[str, Any]) -> None:
        for member in arr(res, "hasMember"):
            ref = text(member, "reference")
            if ref:
                self._member_of[ref.rsplit("/", 1)[-1]] = res["id"]

    def add(self, res: dict[str, Any], code: str, value: float | None, day: dt.date) -> None:
        self._pending.append((res, code, value, day))

    def computed_totals(self) -> list[ScoreFact]:
        # Panels can come after their members in a Bundle: group only once every panel has been seen.
        for res, code, value, day in self._pending:
            key = self._member_of.get(res["id"]) or f"{res.get('effectiveDateTime') or day!s}|{subject_key(res)}"
            if code in TOTAL_CODES:
                self._has_total.add(key)
            else:
                self._groups.setdefault(key, {})[code] = (value, res["id"], day)
        found = []
        panels = set(self._member_of.values())
        for key, group in self._groups.items():
            if key in self._has_total:
                continue
            total = items_total({code: v for code, (v, _, _) in group.items()})
            if total is None:
                continue
            _, rid, day = group[ITEM9]
            panel = key if key in panels else rid
            found.append(ScoreFact(panel, ObservationKind.PHQ9_TOTAL, day, total, note=COMPUTED_FROM_ITEMS))
        return found


def items_total(items: dict[str, float | None]) -> float | None:
    """The PHQ-9 total as the sum of its nine items, each 0-3; None unless all nine are there and readable."""
    values = [items.get(code) for code in PHQ9_ITEMS]
    if any(v is None or not 0 <= v <= 3 for v in values):
        return None
    return float(sum(v for v in values if v is not None))


def score_value(codesets: CodeSets, holder: Any) -> tuple[float | None, str]:
    """A questionnaire score as EHRs send it (issue #20): a number (valueQuantity, valueInteger, valueDecimal), an
    integer valueString ("12"), or a LOINC answer code (valueCodeableConcept, valueCoding: LA6568-5 = 0 …
    LA6571-9 = 3). With no value, why not (for the skipped-entries report)."""
    value = number_value(holder)
    if value is not None or not isinstance(holder, dict):
        return value, ""
    raw = holder.get("valueString")
    if isinstance(raw, str):
        if _INTEGER_TEXT.match(raw):
            return float(int(raw)), ""
        return None, f"valueString {raw[:40]!r} is not an integer"
    answers = [*codings(obj(holder, "valueCodeableConcept")), obj(holder, "valueCoding")]
    for coding in answers:
        code = text(coding, "code").strip()
        # The LA codes are LOINC's; a coding without a system is read by its code alone (they are unambiguous).
        if code in codesets.score_answers and system_key(text(coding, "system")) in ("LOINC", None):
            return float(codesets.score_answers[code]), ""
    named = next((text(c, "code") for c in answers if text(c, "code")), "")
    return None, f"answer {named[:40]!r} is not a known score" if named else ""


def score(rid: str, kind: ObservationKind, day: dt.date, value: float | None, where: str,
          skipped: list[SkippedEntry], why: str = "", note: str = "") -> ScoreFact | None:
    """The score, or None with the reason in ``skipped`` (no value, or a value outside the instrument's range)."""
    low, high = _SCORE_RANGES[kind]
    if value is None and why:
        skipped.append(SkippedEntry(where, "Observation", f"{kind.value} {why}"))
        return None
    if value is None or not low <= value <= high:
        skipped.append(SkippedEntry(where, "Observation", f"{kind.value} value {value} outside {low}-{high}"))
        return None
    return ScoreFact(rid, kind, day, value, note=note)


def panel_scores(codesets: CodeSets, res: dict[str, Any], day: dt.date,
                 skipped: list[SkippedEntry], note: str = "") -> list[ScoreFact]:
    """A PHQ-9 panel (44249-1): its total as a 44261-6 component, else the panel's own value, else the sum of its
    nine item components; item 9 likewise. Totals and items kept as members (``hasMember``) are Observations of
    their own and are read as such."""
    where = f"Observation/{res['id']}"
    found: list[ScoreFact] = []
    item_values: dict[str, float | None] = {}
    for comp in arr(res, "component"):
        code = item_code(comp)
        groups = codesets.observation_groups(comp.get("code")) & SCORE_GROUPS
        value, why = score_value(codesets, comp)
        if code is not None and code not in TOTAL_CODES:
            item_values[code] = value
        if groups:
            kind = ObservationKind(next(iter(groups)))
            if (fact := score(res["id"], kind, day, value, where, skipped, why, note)) is not None:
                found.append(fact)
    if not any(f.kind is ObservationKind.PHQ9_TOTAL for f in found):
        value, why = score_value(codesets, res)
        if value is not None or why:
            fact = score(res["id"], ObservationKind.PHQ9_TOTAL, day, value, where, skipped, why, note)
            if fact is not None:
                found.append(fact)
    if not any(f.kind is ObservationKind.PHQ9_TOTAL for f in found) and (total := items_total(item_values)) is not None:
        found.append(ScoreFact(res["id"], ObservationKind.PHQ9_TOTAL, day, total,
                               note="; ".join(n for n in (COMPUTED_FROM_ITEMS, note) if n)))
    return found


_QR_TOTAL_LINKS = {"44261-6", "phq9_total", "phq-9-total", "total", "total-score", "totalscore", "score"}
_QR_ITEM9_LINKS = {"44260-8", "phq9_9", "phq-9-9", "q9", "item9"}


def questionnaire_scores(codesets: CodeSets, pool: ResourcePool, resources: Iterable[dict[str, Any]],
                         since: dt.date | None, skipped: list[SkippedEntry] | None = None) -> list[ScoreFact]:
    """PHQ-9 totals (and item 9) from QuestionnaireResponses of a PHQ-9 questionnaire; with no total, the sum of
    the nine items (linkIds the items' LOINC codes, as US Core's PHQ-9 QuestionnaireResponse has them)."""
    scores: list[ScoreFact] = []
    for res in resources:
        questionnaire = text(res, "questionnaire").lower()
        if not ("phq" in questionnaire or "44249-1" in questionnaire) or text(res, "status") not in (
                "completed", "amended"):
            continue
        day = parse_day(res.get("authored"))
        if day is None or (since is not None and day < since) or not pool.valid(res):
            continue
        scores += _response_scores(codesets, res, day, skipped)
    return scores


def _response_scores(codesets: CodeSets, res: dict[str, Any], day: dt.date,
                     skipped: list[SkippedEntry] | None) -> list[ScoreFact]:
    where = f"QuestionnaireResponse/{res['id']}"
    scores: list[ScoreFact] = []
    for kind, links in ((ObservationKind.PHQ9_TOTAL, _QR_TOTAL_LINKS), (ObservationKind.PHQ9_ITEM9,
                                                                         _QR_ITEM9_LINKS)):
        value, why = _qr_answer(codesets, arr(res, "item"), links)
        low, high = _SCORE_RANGES[kind]
        if value is not None and low <= value <= high:
            scores.append(ScoreFact(res["id"], kind, day, value, "QuestionnaireResponse"))
        elif why and skipped is not None:
            skipped.append(SkippedEntry(where, "QuestionnaireResponse", f"{kind.value} {why}"))
    if not any(s.kind is ObservationKind.PHQ9_TOTAL for s in scores):
        items: dict[str, float | None] = {}
        _qr_items(codesets, arr(res, "item"), items)
        total = items_total(items)
        if total is not None:
            scores.append(ScoreFact(res["id"], ObservationKind.PHQ9_TOTAL, day, total, "QuestionnaireResponse",
                                    note=COMPUTED_FROM_ITEMS))
    return scores


def _link(item: dict[str, Any]) -> str:
    # US Core's PHQ-9 QuestionnaireResponse (LHC-Forms) writes linkIds as paths: "/44261-6".
    return text(item, "linkId").strip().lower().rsplit("/", 1)[-1]


def _qr_answer(codesets: CodeSets, items: list[Any], links: set[str], depth: int = 0) -> tuple[float | None, str]:
    if depth > 10:
        return None, ""
    for item in items:
        if not isinstance(item, dict):
            continue
        label = text(item, "text").lower()
        if _link(item) in links or (links is _QR_TOTAL_LINKS and "total" in label):
            why = ""
            for answer in arr(item, "answer"):
                value, why = score_value(codesets, answer)
                if value is not None:
                    return value, ""
            if why:
                return None, why
        found = _qr_answer(codesets, arr(item, "item"), links, depth + 1)
        if found != (None, ""):
            return found
    return None, ""


def _qr_items(codesets: CodeSets, items: list[Any], out: dict[str, float | None], depth: int = 0) -> None:
    if depth > 10:
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        if (link := _link(item)) in PHQ9_ITEMS:
            answers = [score_value(codesets, a)[0] for a in arr(item, "answer")]
            out[link] = next((v for v in answers if v is not None), None)
        _qr_items(codesets, arr(item, "item"), out, depth + 1)

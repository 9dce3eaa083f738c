"""The patient's ketamine/esketamine course: whether one is under way, its phase, and its response so far.

Most orders in a ketamine clinic continue a course. A patient whose PHQ-9 fell during induction is responding, not
"below the severity threshold": the indication is judged at the course's baseline (the PHQ-9 before the first
dose), and the course by its response from that baseline (issue #23). Pure: facts, a policy and ``as_of`` in.

Which records make the course: a dose says what was given, an order or a statement what was meant. So when doses
(administrations, dispenses) are on record they alone date the course and decide whether it is current; an active
order or statement decides only when no dose is charted (a course given elsewhere, or documented as a statement).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from fhir_mapping import ClinicalFacts, KetamineExposure, KetamineProduct, ObservationKind

from .model import Score
from .policy import Policy


class CoursePhase(StrEnum):
    """Label dosing: induction in weeks 1-4 from the first dose, then maintenance [S8, S62]."""

    INDUCTION = "induction"
    MAINTENANCE = "maintenance"


class ResponseClass(StrEnum):
    """The PHQ-9 response from the course's baseline to its latest score."""

    REMISSION = "remission"
    RESPONSE = "response"
    PARTIAL = "partial"
    NONE = "none"
    UNKNOWN = "unknown"
    #: Before the end of induction: benefit is evaluated then [S62].
    NOT_YET_DUE = "not_yet_due"


@dataclass(frozen=True, slots=True)
class TreatmentCourse:
    product: KetamineProduct
    #: The last dose (or, with none charted, an active order or statement) is within the policy's continuity window.
    current: bool
    first_dose: dt.date
    last_dose: dt.date
    #: Doses on record (one a day); None when only orders or statements say the course exists.
    doses: int | None
    baseline_phq9: Score | None
    latest_phq9: Score | None
    response: ResponseClass
    #: Week of the course on ``as_of`` (1 on the first dose's week); None when not current.
    week: int | None
    phase: CoursePhase | None
    induction_end: dt.date
    dose_days: tuple[dt.date, ...]
    evidence: tuple[str, ...]

    @property
    def reduction(self) -> float | None:
        """The fall of the PHQ-9 from baseline, as a fraction of the baseline (0.58 for 19 → 8)."""
        if self.baseline_phq9 is None or self.latest_phq9 is None or self.baseline_phq9.value <= 0:
            return None
        return (self.baseline_phq9.value - self.latest_phq9.value) / self.baseline_phq9.value

    @property
    def response_due(self) -> bool:
        """Induction has ended: the label asks for the evidence of benefit [S62]."""
        return self.current and self.phase is CoursePhase.MAINTENANCE

    def days_into(self, day: dt.date) -> int:
        return (day - self.first_dose).days


_PRODUCT_WORDS = {KetamineProduct.ESKETAMINE_NASAL: "Esketamine", KetamineProduct.KETAMINE: "Ketamine"}
_RESPONSE_WORDS = {ResponseClass.REMISSION: "remission", ResponseClass.RESPONSE: "response",
                   ResponseClass.PARTIAL: "partial response", ResponseClass.NONE: "no response",
                   ResponseClass.UNKNOWN: "response unknown", ResponseClass.NOT_YET_DUE: "not yet due"}


def product_word(product: KetamineProduct) -> str:
    return _PRODUCT_WORDS[product]


def response_words(response: ResponseClass) -> str:
    return _RESPONSE_WORDS[response]


_MINUS = "\u2212"  # the typographic minus: "-58 %" reads as a dash in clinical text


def course_summary(course: TreatmentCourse) -> str:
    """The course in one line: 'Esketamine course, week 5 (9 doses): PHQ-9 19 to 8 (minus 58 %, response)',
    written with an arrow and a minus sign."""
    product = product_word(course.product)
    doses = "" if course.doses is None else f" ({course.doses} dose{'s' if course.doses != 1 else ''})"
    if course.current:
        head = f"{product} course, week {course.week}{doses}"
    else:
        head = (f"Earlier {product.lower()} course {course.first_dose.isoformat()} to "
                f"{course.last_dose.isoformat()}{doses}")
    b, latest, words = course.baseline_phq9, course.latest_phq9, response_words(course.response)
    if course.response is ResponseClass.NOT_YET_DUE:
        words = f"benefit evaluated at the end of induction, {course.induction_end.isoformat()}"
    if b is not None and latest is not None:
        reduction = course.reduction
        change = "" if reduction is None else f"{-reduction * 100:+.0f} %, ".replace("-", _MINUS)
        return f"{head}: PHQ-9 {b.value:g} \u2192 {latest.value:g} ({change}{words})"
    if b is not None:
        return f"{head}: PHQ-9 {b.value:g} before the first dose, none since ({words})"
    if latest is not None:
        return f"{head}: no PHQ-9 before the first dose, latest {latest.value:g} ({words})"
    return f"{head}: no PHQ-9 before or since the first dose ({words})"


def _spans(records: list[KetamineExposure], as_of: dt.date) -> list[tuple[dt.date, dt.date, KetamineExposure]]:
    """Each record's span: a dose its day, an active order or statement until ``as_of``, another until its end."""
    spans = []
    for r in records:
        end = as_of if r.active and not r.is_dose else (r.end or r.start)
        spans.append((r.start, max(r.start, min(end, as_of)), r))
    return sorted(spans, key=lambda s: (s[0], s[1]))


def _latest_course(records: list[KetamineExposure], gap_days: int, as_of: dt.date) -> list[KetamineExposure]:
    """The records of the most recent course: successive records less than ``gap_days`` apart make one course."""
    groups: list[list[KetamineExposure]] = []
    group_end: dt.date | None = None
    for start, end, record in _spans(records, as_of):
        if group_end is None or (start - group_end).days > gap_days:
            groups.append([])
            group_end = end
        groups[-1].append(record)
        group_end = max(group_end, end)
    return groups[-1] if groups else []


def _score(facts: ClinicalFacts, lo: dt.date, hi: dt.date, after: bool = False) -> Score | None:
    """The latest PHQ-9 total from ``lo`` to ``hi`` (``after``: strictly after ``lo``)."""
    found = [s for s in facts.scores if s.kind is ObservationKind.PHQ9_TOTAL
             and (lo < s.day if after else lo <= s.day) and s.day <= hi]
    if not found:
        return None
    latest = found[-1]
    return Score(latest.value, latest.day, latest.reference, latest.note)


def classify_response(baseline: float, latest: float, policy: Policy) -> ResponseClass:
    """Remission below the policy's cut-off [S25]; else response at a fall of at least the response fraction [S31];
    partial at a fall of at least the partial fraction [S42]; else none. Compared without division, so that a
    50 % fall is a response exactly at the edge."""
    t = policy.thresholds
    if latest < t.remission_below:
        return ResponseClass.REMISSION
    if latest <= baseline * t.response_max_fraction:
        return ResponseClass.RESPONSE
    if latest <= baseline * (1 - t.partial_response_min_reduction):
        return ResponseClass.PARTIAL
    return ResponseClass.NONE


def assess_course(facts: ClinicalFacts, policy: Policy, as_of: dt.date) -> TreatmentCourse | None:
    """The patient's most recent ketamine/esketamine course on ``as_of``; None when none is on record."""
    t = policy.thresholds
    records = _latest_course([r for r in facts.ketamine if r.start <= as_of], t.course_continuity_days, as_of)
    if not records:
        return None
    dose_days, first, last = _course_days(records, as_of)
    current = (as_of - last).days <= t.course_continuity_days
    induction_end = first + dt.timedelta(weeks=t.session_induction_weeks)
    baseline = _score(facts, first - dt.timedelta(days=t.severity_window_days), first)
    if current:
        latest = _score(facts, first, as_of, after=True)
        week = (as_of - first).days // 7 + 1
        phase = CoursePhase.INDUCTION if as_of < induction_end else CoursePhase.MAINTENANCE
    else:
        latest = _score(facts, first, min(as_of, last + dt.timedelta(days=t.severity_window_days)), after=True)
        week, phase = None, None
    return TreatmentCourse(
        product=_course_product(records), current=current, first_dose=first, last_dose=last,
        doses=len(dose_days) if dose_days else None, baseline_phq9=baseline, latest_phq9=latest,
        response=_response(policy, as_of, current, phase, baseline, latest),
        week=week, phase=phase, induction_end=induction_end, dose_days=dose_days,
        evidence=tuple(r.reference for r in records))


def _course_days(records: list[KetamineExposure], as_of: dt.date) -> tuple[tuple[dt.date, ...], dt.date, dt.date]:
    """The course's dose days, first day and last day: dated by its doses when any is charted, else by the spans of
    its orders and statements."""
    dose_days = tuple(sorted({r.start for r in records if r.is_dose}))
    if dose_days:
        return dose_days, dose_days[0], dose_days[-1]
    spans = _spans(records, as_of)
    return dose_days, spans[0][0], max(end for _, end, _ in spans)


def _course_product(records: list[KetamineExposure]) -> KetamineProduct:
    """Esketamine when at least half the course's records are, else ketamine."""
    esketamine = [r for r in records if r.product is KetamineProduct.ESKETAMINE_NASAL]
    if esketamine and len(esketamine) * 2 >= len(records):
        return KetamineProduct.ESKETAMINE_NASAL
    return KetamineProduct.KETAMINE


def _response(policy: Policy, as_of: dt.date, current: bool, phase: CoursePhase | None, baseline: Score | None,
              latest: Score | None) -> ResponseClass:
    """Not yet due during induction; unknown without both scores or, in a current course, without a recent latest
    one; else classified from baseline to latest."""
    if current and phase is CoursePhase.INDUCTION:
        return ResponseClass.NOT_YET_DUE
    if baseline is None or latest is None:
        return ResponseClass.UNKNOWN
    if current and (as_of - latest.day).days > policy.thresholds.severity_window_days:
        # Benefit is judged on a current score, with the severity rule's own window.
        return ResponseClass.UNKNOWN
    return classify_response(baseline.value, latest.value, policy)


def esketamine_dose_outside_label(dose_mg: float, older: bool, course: TreatmentCourse | None,
                                  policy: Policy) -> str | None:
    """Why an esketamine dose per session is outside the label's doses, or None: day 1 is 56 mg (28 mg at the
    policy's older-adult age), then 56 or 84 mg [S8]. A first dose is one with no current course on record."""
    t = policy.thresholds
    first = course is None or not course.current
    ok: tuple[float, ...]
    if older and first:
        ok, why = (t.esketamine_older_start_mg,), f"at {t.older_adult_age} or older the label starts at " \
                                                   f"{t.esketamine_older_start_mg:g} mg"
    elif first:
        ok, why = (t.esketamine_dose_low_mg,), f"the label's first dose is {t.esketamine_dose_low_mg:g} mg"
    elif older:
        ok = (t.esketamine_older_start_mg, t.esketamine_dose_low_mg, t.esketamine_dose_high_mg)
        why = f"the label's doses are {t.esketamine_dose_low_mg:g} or {t.esketamine_dose_high_mg:g} mg " \
              f"({t.esketamine_older_start_mg:g} mg at {t.older_adult_age} or older)"
    else:
        ok = (t.esketamine_dose_low_mg, t.esketamine_dose_high_mg)
        why = f"the label's doses are {t.esketamine_dose_low_mg:g} or {t.esketamine_dose_high_mg:g} mg"
    return None if dose_mg in ok else f"{dose_mg:g} mg per session: {why}"

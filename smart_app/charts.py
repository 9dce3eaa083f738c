"""Server-rendered SVG charts: the antidepressant trial timeline with PHQ-9 / GAD-7 on the same time axis, and blood
pressure against the 140/90 line. No script, no CDN (EHR networks block them); every chart has a table beside it in
the page, and colours meet WCAG AA contrast on white."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from eligibility import BP_CHART_DAYS, Adequacy, Outcome, TreatmentCourse, TrialAssessment, product_word
from fhir_mapping import BloodPressureFact, ObservationKind, ScoreFact

INK, MUTED, GRID = "#1b1f24", "#4a5561", "#d5dbe1"
ADEQUATE, INADEQUATE, UNKNOWN = "#0b5cad", "#8a4b00", "#5f6b76"
PHQ, GAD, SYS, DIA, LIMIT = "#6a1b9a", "#00695c", "#b3261e", "#0b5cad", "#8a4b00"
W, LEFT, RIGHT = 680, 165, 16
BP_AXIS_MAX = 260.0
#: Ketamine/esketamine doses (teal-green, AA contrast on white like the others).
COURSE = "#1e6b3a"


def _x(day: dt.date, start: dt.date, end: dt.date) -> float:
    span = max((end - start).days, 1)
    return LEFT + (W - LEFT - RIGHT) * (day - start).days / span


def _year_ticks(start: dt.date, end: dt.date, top: float, bottom: float) -> list[str]:
    parts = []
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    # At most 8 labels, so they never overlap, however long the chart's span (an antidepressant since 1990).
    step = next((s for s in (1, 2, 3, 6, 12, 24, 36, 60, 120) if months / s <= 8), 12 * (months // 96 + 1))
    d = dt.date(start.year, start.month, 1)
    while d <= end:
        on_step = (d.month - 1) % step == 0 if step < 12 else d.month == 1 and (d.year - start.year) % (step // 12) == 0
        if d >= start and on_step:
            x = _x(d, start, end)
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>'
                         f'<text x="{x:.1f}" y="{bottom + 14}" font-size="11" fill="{MUTED}" '
                         f'text-anchor="middle">{d.strftime("%b %Y")}</text>')
        d = dt.date(d.year + (d.month // 12), d.month % 12 + 1, 1)
    return parts


def _series(points: Sequence[tuple[float, float, str]], color: str, dash: str = "") -> str:
    """A line through (x, y) points, each marked with a circle whose title reads its value."""
    if not points:
        return ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    marks = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{escape(title)}</title>'
                    "</circle>" for x, y, title in points)
    return f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dashed}/>{marks}'


#: PHQ-9 severity bands (Kroenke, Spitzer, Williams 2001, PMID 11556941): lower bound, name, shade.
PHQ9_BANDS = ((0, "minimal", "#ffffff"), (5, "mild", "#f6f3fa"), (10, "moderate", "#eee8f5"),
              (15, "moderately severe", "#e5dcf0"), (20, "severe", "#dccfeb"))


def _short(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def _legend(y: float, items: Sequence[tuple[str, str]]) -> str:
    """Swatches and names in one row (every colour is also named, never the only cue)."""
    parts, x = [], float(LEFT)
    for color, name in items:
        parts.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="12" height="10" fill="{color}"/>'
                     f'<text x="{x + 16:.0f}" y="{y:.0f}" font-size="11" fill="{INK}">{escape(name)}</text>')
        x += 28 + 6.2 * len(name)
    return "".join(parts)


def _course_row(course: TreatmentCourse, y: float, bar_h: float, start: dt.date, end: dt.date,
                bottom: float) -> list[str]:
    """The ketamine/esketamine course as a row of the timeline: its span, one tick per dose, its baseline PHQ-9."""
    name = product_word(course.product).lower()
    doses = f"{course.doses} doses" if course.doses is not None else "doses not charted"
    x1, x2 = _x(course.first_dose, start, end), _x(course.last_dose, start, end)
    out = [f'<text x="{LEFT - 8}" y="{y + 15}" font-size="12" fill="{INK}" text-anchor="end">'
           f'{escape(name)} · {escape(doses)}</text>',
           f'<rect class="course" x="{x1:.1f}" y="{y + bar_h / 2 - 2}" width="{max(x2 - x1, 2):.1f}" height="4" '
           f'fill="{COURSE}"><title>{escape(name)}: {course.first_dose} to {course.last_dose}, {escape(doses)}'
           '</title></rect>']
    for day in course.dose_days:
        x = _x(day, start, end)
        out.append(f'<rect class="dose" x="{x - 1.5:.1f}" y="{y + 3}" width="3" height="{bar_h - 6}" '
                   f'fill="{COURSE}"><title>dose {day}</title></rect>')
    if course.baseline_phq9 is not None:
        sx = _x(course.baseline_phq9.day, start, end)
        out.append(f'<line x1="{sx:.1f}" y1="{y + bar_h}" x2="{sx:.1f}" y2="{bottom}" stroke="{PHQ}" '
                   f'stroke-dasharray="2 3"/><text x="{sx:.1f}" y="{y - 1}" font-size="10" fill="{PHQ}" '
                   'text-anchor="middle">B</text>')
    return out


def _svg_open(height: float, ident: str, title: str, desc: str) -> list[str]:
    """The opening of every chart: a labelled, described image (the table beside it holds the same data)."""
    return [f'<svg viewBox="0 0 {W} {height}" width="100%" role="img" aria-labelledby="{ident}-title {ident}-desc" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">',
            f'<title id="{ident}-title">{title}</title>', f'<desc id="{ident}-desc">{desc}</desc>']


@dataclass(frozen=True, slots=True)
class _Timeline:
    """The timeline's geometry: its dates, one bar row per trial (and the course), and the score plot below."""

    start: dt.date
    end: dt.date
    rows: int
    bar_h: float = 22
    gap: float = 8
    bars_top: float = 10
    plot_h: float = 140

    @property
    def plot_top(self) -> float:
        return self.bars_top + self.rows * (self.bar_h + self.gap) + 20

    @property
    def plot_bottom(self) -> float:
        return self.plot_top + self.plot_h

    @property
    def legend_y(self) -> float:
        return self.plot_bottom + 38

    def x(self, day: dt.date) -> float:
        return _x(day, self.start, self.end)

    def row_y(self, i: int) -> float:
        return self.bars_top + i * (self.bar_h + self.gap)

    def y(self, score: float) -> float:
        """A PHQ-9 / GAD-7 score's height (0 to 27)."""
        return self.plot_top + self.plot_h - self.plot_h * score / 27


_TRIAL_COLOURS = {Adequacy.ADEQUATE: ADEQUATE, Adequacy.INADEQUATE: INADEQUATE}
_OUTCOME_WORDS = {Outcome.RESPONSE: "response", Outcome.NO_RESPONSE: "no response"}


def _trial_row(t: TrialAssessment, y: float, tl: _Timeline) -> list[str]:
    """One trial: its name and dose, a bar coloured by adequacy, its weeks and outcome, its B/F scores."""
    x1, x2 = tl.x(t.start), tl.x(t.end)
    color = _TRIAL_COLOURS.get(t.adequacy, UNKNOWN)
    dose = f"{t.max_daily_dose_mg:g} mg/d" if t.max_daily_dose_mg is not None else "dose ?"
    text = f"{t.ingredient} · {dose}"
    # The label column holds about 24 characters; the bar's title carries the whole name.
    label = escape(text if len(text) <= 24 else text[:23] + "…")
    outcome = _OUTCOME_WORDS.get(t.outcome, "outcome ?")
    out = [f'<text x="{LEFT - 8}" y="{y + 15}" font-size="12" fill="{INK}" text-anchor="end">{label}</text>',
           f'<rect class="trial" x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 2):.1f}" height="{tl.bar_h}" rx="3" '
           f'fill="{color}">'
           f'<title>{escape(t.ingredient)}: {t.start} to {t.end}, {t.weeks_at_adequate_dose:g} weeks at '
           f'adequate dose — {t.adequacy.value}, {outcome}</title></rect>']
    if t.ongoing:  # an open end: the course runs on past the chart's edge
        out.append(f'<path d="M{x2:.1f},{y} l8,{tl.bar_h / 2} l-8,{tl.bar_h / 2} z" fill="{color}">'
                   '<title>ongoing</title></path>')
    inside = f"{t.weeks_at_adequate_dose:g} wk · {outcome}" + (" · ongoing" if t.ongoing else "")
    if len(inside) * 6.3 + 8 <= x2 - x1:
        out.append(f'<text x="{x1 + 4:.1f}" y="{y + 15}" font-size="11" fill="#ffffff">{escape(inside)}</text>')
    else:  # too narrow for its label: write it after the bar, in ink
        out.append(f'<text x="{x2 + 4:.1f}" y="{y + 15}" font-size="11" fill="{INK}">{escape(inside)}</text>')
    for score, mark in ((t.baseline, "B"), (t.follow_up, "F")):
        if score is not None:
            sx = tl.x(score.day)
            out.append(f'<line x1="{sx:.1f}" y1="{y + tl.bar_h}" x2="{sx:.1f}" y2="{tl.plot_bottom}" '
                       f'stroke="{PHQ}" stroke-dasharray="2 3"/>'
                       f'<text x="{sx:.1f}" y="{y - 1}" font-size="10" fill="{PHQ}" text-anchor="middle">'
                       f'{mark}</text>')
    return out


def _score_axis(tl: _Timeline, phq9_threshold: float | None, with_gad: bool) -> list[str]:
    """The PHQ-9 severity bands, the policy's threshold, the 0 to 27 scale and the series' names."""
    out = []
    for (low, name, shade), upper in zip(PHQ9_BANDS, [b[0] for b in PHQ9_BANDS[1:]] + [27], strict=True):
        out.append(f'<rect x="{LEFT}" y="{tl.y(upper):.1f}" width="{W - LEFT - RIGHT}" '
                   f'height="{tl.y(low) - tl.y(upper):.1f}" fill="{shade}"><title>PHQ-9 {low} to '
                   f'{upper - 1 if upper < 27 else 27}: {name}</title></rect>'
                   f'<text x="{LEFT + 4}" y="{tl.y(low) - 3:.1f}" font-size="9" fill="{MUTED}">{name}</text>')
    if phq9_threshold is not None:
        y = tl.y(phq9_threshold)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{LIMIT}" '
                   f'stroke-width="1.5" stroke-dasharray="6 4"/>'
                   f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{y - 3:.1f}" font-size="10" '
                   f'fill="{LIMIT}" text-anchor="middle">policy threshold {phq9_threshold:g}</text>')
    for v in (0, 5, 10, 15, 20, 27):
        out.append(f'<text x="{LEFT - 8}" y="{tl.y(v) + 4:.1f}" font-size="10" fill="{MUTED}" '
                   f'text-anchor="end">{v}</text><line x1="{LEFT}" x2="{W - RIGHT}" y1="{tl.y(v):.1f}" '
                   f'y2="{tl.y(v):.1f}" stroke="{GRID}"/>')
    out.append(f'<text x="{LEFT - 40}" y="{tl.plot_top - 6}" font-size="11" fill="{PHQ}">PHQ-9</text>')
    if with_gad:
        out.append(f'<text x="{LEFT - 40}" y="{tl.plot_top + 8}" font-size="11" fill="{GAD}">GAD-7 (dashed)</text>')
    return out


def _scores(tl: _Timeline, phq: Sequence[ScoreFact], gad: Sequence[ScoreFact]) -> list[str]:
    """Both series, then each one's latest value written out with its date (no hovering needed)."""
    out = [_series([(tl.x(s.day), tl.y(s.value), f"{s.day}: {s.value:g}") for s in series], color, dash)
           for series, color, dash in ((phq, PHQ, ""), (gad, GAD, "5 4"))]
    for series, color, name, dy in ((phq, PHQ, "PHQ-9", -8), (gad, GAD, "GAD-7", 14)):
        if series:
            last = max(series, key=lambda s: s.day)
            x = tl.x(last.day)
            anchor = "end" if x > W - RIGHT - 120 else "start"
            out.append(f'<text x="{x + (-6 if anchor == "end" else 6):.1f}" y="{tl.y(last.value) + dy:.1f}" '
                       f'font-size="11" font-weight="700" fill="{color}" text-anchor="{anchor}">'
                       f'{name} {last.value:g} ({_short(last.day)})</text>')
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def timeline_svg(trials: Sequence[TrialAssessment], scores: Sequence[ScoreFact], as_of: dt.date,
                 phq9_threshold: float | None = None, course: TreatmentCourse | None = None) -> Markup:
    phq = [s for s in scores if s.kind is ObservationKind.PHQ9_TOTAL]
    gad = [s for s in scores if s.kind is ObservationKind.GAD7_TOTAL]
    days = [t.start for t in trials] + [s.day for s in phq + gad] + ([course.first_dose] if course else [])
    if not days:
        return Markup('<p class="empty">No antidepressant trials or PHQ-9 scores on record.</p>')
    end = max(as_of, *(t.end for t in trials)) if trials else as_of
    tl = _Timeline(min(days) - dt.timedelta(days=14), end + dt.timedelta(days=7), len(trials) + (1 if course else 0))
    out = _svg_open(tl.legend_y + 10, "tl", "Antidepressant trials and PHQ-9 over time",
                    f"{_count(len(trials), 'trial')}; {_count(len(phq), 'PHQ-9 score')} and "
                    f"{_count(len(gad), 'GAD-7 score')}. "
                    "The table below lists the same data.")
    out += _year_ticks(tl.start, tl.end, tl.bars_top, tl.plot_bottom)
    for i, t in enumerate(trials):
        out += _trial_row(t, tl.row_y(i), tl)
    if course is not None:
        out += _course_row(course, tl.row_y(len(trials)), tl.bar_h, tl.start, tl.end, tl.plot_bottom)
    out += _score_axis(tl, phq9_threshold, bool(gad))
    out += _scores(tl, phq, gad)
    legend = [(ADEQUATE, "adequate trial"), (INADEQUATE, "not adequate"), (UNKNOWN, "adequacy unknown"),
              (PHQ, "PHQ-9 (B baseline, F follow-up)")] + ([(GAD, "GAD-7 (dashed)")] if gad else []) + \
        ([(COURSE, "ketamine/esketamine doses")] if course else [])
    out.append(_legend(tl.legend_y, legend))
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text from data is escape()d above; the rest is numbers


def bp_svg(readings: Sequence[BloodPressureFact], as_of: dt.date, systolic_limit: float,
           diastolic_limit: float) -> Markup:
    shown = [b for b in readings if b.day >= as_of - dt.timedelta(days=BP_CHART_DAYS)]
    if not shown:
        return Markup('<p class="empty">No blood pressure reading in the last 12 months.</p>')
    start, end = min(b.day for b in shown) - dt.timedelta(days=7), as_of + dt.timedelta(days=3)
    top, h = 10, 180
    # The axis is clamped to a plausible range whatever the data: a mistyped 10,000,000 mmHg must not stretch the
    # chart (or the page) without bound. Readings outside it sit on the edge and say so.
    lo, hi = 40.0, min(BP_AXIS_MAX, max(200.0, *(b.systolic or 0 for b in shown)))

    def y_of(v: float) -> float:
        return top + h - h * (min(max(v, lo), hi) - lo) / (hi - lo)

    def label(b: BloodPressureFact, which: str, v: float) -> str:
        off = " (off the chart's scale)" if not lo <= v <= hi else ""
        return f"{b.day}: {which} {v:g}{off}"

    out = _svg_open(top + h + 40, "bp", "Blood pressure, last 12 months",
                    f"{len(shown)} readings against the {systolic_limit:g}/{diastolic_limit:g} mmHg threshold. "
                    "The table below lists the same data.")
    out += _year_ticks(start, end, top, top + h)
    for v in range(60, int(hi) + 1, 20):
        out.append(f'<text x="{LEFT - 8}" y="{y_of(v) + 4:.1f}" font-size="10" fill="{MUTED}" text-anchor="end">'
                   f'{v}</text><line x1="{LEFT}" x2="{W - RIGHT}" y1="{y_of(v):.1f}" y2="{y_of(v):.1f}" '
                   f'stroke="{GRID}"/>')
    for limit, name in ((systolic_limit, "systolic limit"), (diastolic_limit, "diastolic limit")):
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y_of(limit):.1f}" y2="{y_of(limit):.1f}" '
                   f'stroke="{LIMIT}" stroke-width="1.5" stroke-dasharray="6 4"/>'
                   f'<text x="{W - RIGHT}" y="{y_of(limit) - 4:.1f}" font-size="11" fill="{LIMIT}" '
                   f'text-anchor="end">{limit:g} {name}</text>')
    out.append(_series([(_x(b.day, start, end), y_of(b.systolic), label(b, "systolic", b.systolic))
                        for b in shown if b.systolic is not None], SYS))
    out.append(_series([(_x(b.day, start, end), y_of(b.diastolic), label(b, "diastolic", b.diastolic))
                        for b in shown if b.diastolic is not None], DIA))
    out.append(f'<text x="{LEFT - 40}" y="{top + h / 2:.0f}" font-size="11" fill="{MUTED}" text-anchor="middle" '
               f'transform="rotate(-90 {LEFT - 40} {top + h / 2:.0f})">mmHg</text>')
    latest = max(shown, key=lambda b: b.day)
    x = _x(latest.day, start, end)
    if latest.systolic is not None:
        out.append(f'<text x="{x - 6:.1f}" y="{y_of(latest.systolic) - 8:.1f}" font-size="11" font-weight="700" '
                   f'fill="{INK}" text-anchor="end">latest {latest.systolic:g}/'
                   f'{"?" if latest.diastolic is None else f"{latest.diastolic:g}"} mmHg ({_short(latest.day)})'
                   '</text>')
    out.append(f'<text x="{LEFT + 8}" y="{top + 12}" font-size="11" fill="{SYS}">● systolic</text>'
               f'<text x="{LEFT + 78}" y="{top + 12}" font-size="11" fill="{DIA}">● diastolic</text></svg>')
    return Markup("".join(out))  # noqa: S704 - only numbers and dates from data; no free text

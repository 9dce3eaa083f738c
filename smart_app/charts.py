"""Server-rendered SVG charts: the antidepressant trial timeline with PHQ-9 / GAD-7 on the same time axis, and blood
pressure against the 140/90 line. No script, no CDN (EHR networks block them); every chart has a table beside it in
the page, and colours meet WCAG AA contrast on white."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

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


def timeline_svg(trials: Sequence[TrialAssessment], scores: Sequence[ScoreFact], as_of: dt.date,
                 phq9_threshold: float | None = None, course: TreatmentCourse | None = None) -> Markup:
    phq = [s for s in scores if s.kind is ObservationKind.PHQ9_TOTAL]
    gad = [s for s in scores if s.kind is ObservationKind.GAD7_TOTAL]
    days = [t.start for t in trials] + [s.day for s in phq + gad] + ([course.first_dose] if course else [])
    if not days:
        return Markup('<p class="empty">No antidepressant trials or PHQ-9 scores on record.</p>')
    start = min(days) - dt.timedelta(days=14)
    end = max(as_of, *(t.end for t in trials)) + dt.timedelta(days=7) if trials else as_of + dt.timedelta(days=7)
    bar_h, gap = 22, 8
    bars_top = 10
    rows = len(trials) + (1 if course else 0)
    plot_top = bars_top + rows * (bar_h + gap) + 20
    plot_h = 140
    legend_y = plot_top + plot_h + 38
    height = legend_y + 10
    out = [f'<svg viewBox="0 0 {W} {height}" width="100%" role="img" aria-labelledby="tl-title tl-desc" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">',
           '<title id="tl-title">Antidepressant trials and PHQ-9 over time</title>',
           f'<desc id="tl-desc">{len(trials)} trial(s); {len(phq)} PHQ-9 and {len(gad)} GAD-7 scores. '
           'The table below lists the same data.</desc>']
    out += _year_ticks(start, end, bars_top, plot_top + plot_h)
    for i, t in enumerate(trials):
        y = bars_top + i * (bar_h + gap)
        x1, x2 = _x(t.start, start, end), _x(t.end, start, end)
        color = {Adequacy.ADEQUATE: ADEQUATE, Adequacy.INADEQUATE: INADEQUATE}.get(t.adequacy, UNKNOWN)
        dose = f"{t.max_daily_dose_mg:g} mg/d" if t.max_daily_dose_mg is not None else "dose ?"
        text = f"{t.ingredient} · {dose}"
        # The label column holds about 24 characters; the bar's title carries the whole name.
        label = escape(text if len(text) <= 24 else text[:23] + "…")
        outcome = {Outcome.RESPONSE: "response", Outcome.NO_RESPONSE: "no response"}.get(t.outcome, "outcome ?")
        out.append(f'<text x="{LEFT - 8}" y="{y + 15}" font-size="12" fill="{INK}" text-anchor="end">{label}</text>')
        out.append(f'<rect class="trial" x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 2):.1f}" height="{bar_h}" rx="3" '
                   f'fill="{color}">'
                   f'<title>{escape(t.ingredient)}: {t.start} to {t.end}, {t.weeks_at_adequate_dose:g} weeks at '
                   f'adequate dose — {t.adequacy.value}, {outcome}</title></rect>')
        if t.ongoing:  # an open end: the course runs on past the chart's edge
            out.append(f'<path d="M{x2:.1f},{y} l8,{bar_h / 2} l-8,{bar_h / 2} z" fill="{color}">'
                       '<title>ongoing</title></path>')
        inside = f"{t.weeks_at_adequate_dose:g} wk · {outcome}" + (" · ongoing" if t.ongoing else "")
        if len(inside) * 6.3 + 8 <= x2 - x1:
            out.append(f'<text x="{x1 + 4:.1f}" y="{y + 15}" font-size="11" fill="#ffffff">{escape(inside)}</text>')
        else:  # too narrow for its label: write it after the bar, in ink
            out.append(f'<text x="{x2 + 4:.1f}" y="{y + 15}" font-size="11" fill="{INK}">{escape(inside)}</text>')
        for score, mark in ((t.baseline, "B"), (t.follow_up, "F")):
            if score is not None:
                sx = _x(score.day, start, end)
                out.append(f'<line x1="{sx:.1f}" y1="{y + bar_h}" x2="{sx:.1f}" y2="{plot_top + plot_h}" '
                           f'stroke="{PHQ}" stroke-dasharray="2 3"/>'
                           f'<text x="{sx:.1f}" y="{y - 1}" font-size="10" fill="{PHQ}" text-anchor="middle">'
                           f'{mark}</text>')

    if course is not None:
        out += _course_row(course, bars_top + len(trials) * (bar_h + gap), bar_h, start, end, plot_top + plot_h)

    def y_of(v: float) -> float:
        return plot_top + plot_h - plot_h * v / 27

    for (low, name, shade), upper in zip(PHQ9_BANDS, [b[0] for b in PHQ9_BANDS[1:]] + [27], strict=True):
        out.append(f'<rect x="{LEFT}" y="{y_of(upper):.1f}" width="{W - LEFT - RIGHT}" '
                   f'height="{y_of(low) - y_of(upper):.1f}" fill="{shade}"><title>PHQ-9 {low} to '
                   f'{upper - 1 if upper < 27 else 27}: {name}</title></rect>'
                   f'<text x="{LEFT + 4}" y="{y_of(low) - 3:.1f}" font-size="9" fill="{MUTED}">{name}</text>')
    if phq9_threshold is not None:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y_of(phq9_threshold):.1f}" '
                   f'y2="{y_of(phq9_threshold):.1f}" stroke="{LIMIT}" stroke-width="1.5" stroke-dasharray="6 4"/>'
                   f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{y_of(phq9_threshold) - 3:.1f}" font-size="10" '
                   f'fill="{LIMIT}" text-anchor="middle">policy threshold {phq9_threshold:g}</text>')
    for v in (0, 5, 10, 15, 20, 27):
        out.append(f'<text x="{LEFT - 8}" y="{y_of(v) + 4:.1f}" font-size="10" fill="{MUTED}" '
                   f'text-anchor="end">{v}</text><line x1="{LEFT}" x2="{W - RIGHT}" y1="{y_of(v):.1f}" '
                   f'y2="{y_of(v):.1f}" stroke="{GRID}"/>')
    out.append(f'<text x="{LEFT - 40}" y="{plot_top - 6}" font-size="11" fill="{PHQ}">PHQ-9</text>')
    if gad:
        out.append(f'<text x="{LEFT - 40}" y="{plot_top + 8}" font-size="11" fill="{GAD}">GAD-7 (dashed)</text>')
    for series, color, dash in ((phq, PHQ, ""), (gad, GAD, "5 4")):
        out.append(_series([(_x(s.day, start, end), y_of(s.value), f"{s.day}: {s.value:g}") for s in series],
                           color, dash))
    for series, color, name, dy in ((phq, PHQ, "PHQ-9", -8), (gad, GAD, "GAD-7", 14)):
        if series:  # the latest value written out, with its date: no hovering needed
            last = max(series, key=lambda s: s.day)
            x = _x(last.day, start, end)
            anchor = "end" if x > W - RIGHT - 120 else "start"
            out.append(f'<text x="{x + (-6 if anchor == "end" else 6):.1f}" y="{y_of(last.value) + dy:.1f}" '
                       f'font-size="11" font-weight="700" fill="{color}" text-anchor="{anchor}">'
                       f'{name} {last.value:g} ({_short(last.day)})</text>')
    legend = [(ADEQUATE, "adequate trial"), (INADEQUATE, "not adequate"), (UNKNOWN, "adequacy unknown"),
              (PHQ, "PHQ-9 (B baseline, F follow-up)")] + ([(GAD, "GAD-7 (dashed)")] if gad else []) + \
        ([(COURSE, "ketamine/esketamine doses")] if course else [])
    out.append(_legend(legend_y, legend))
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

    out = [f'<svg viewBox="0 0 {W} {top + h + 40}" width="100%" role="img" aria-labelledby="bp-title bp-desc" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">',
           '<title id="bp-title">Blood pressure, last 12 months</title>',
           f'<desc id="bp-desc">{len(shown)} readings against the {systolic_limit:g}/{diastolic_limit:g} mmHg '
           'threshold. The table below lists the same data.</desc>']
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

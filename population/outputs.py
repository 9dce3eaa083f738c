"""The screen's outputs: the worklist (CSV and Parquet), every assessment (Parquet), a summary (JSON) and one
self-contained report page. Files 0600 in a folder 0700: they hold patient ids.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
from markupsafe import Markup, escape

from .bucket import PatientResult

WORKLIST_COLUMNS = ("patient", "verdict", "treatment_resistance", "severity", "contraindications_present",
                    "contraindications_unknown", "workup", "data_gaps", "course_current", "course_phase",
                    "course_response", "policy", "as_of")
_LISTS = ("contraindications_present", "contraindications_unknown", "workup", "data_gaps")


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
    path.chmod(0o600)


def ordered(results: Iterable[PatientResult]) -> list[PatientResult]:
    return sorted(results, key=lambda r: (r.priority, r.patient))


def _csv(rows: Sequence[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(WORKLIST_COLUMNS)
    for row in rows:
        writer.writerow([";".join(row[c]) if c in _LISTS else "" if row[c] is None else
                         str(row[c]).lower() if isinstance(row[c], bool) else row[c] for c in WORKLIST_COLUMNS])
    return out.getvalue().encode("utf-8")


def _parquet(path: Path, columns: dict[str, str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows to Parquet through DuckDB's NDJSON reader (``executemany`` inserts row by row: 1 s per 1,000 patients),
    in the order given; the staging file is private and deleted."""
    tmp = path.with_name(path.name + ".tmp")
    staged = path.with_name(path.name + ".tmp.ndjson")
    write_private(staged, "".join(json.dumps(dict(zip(columns, row, strict=True))) + "\n"
                                  for row in rows).encode("utf-8"))
    con = duckdb.connect()
    try:
        spec = "{" + ", ".join(f"{_quote(c)}: {_quote(t)}" for c, t in columns.items()) + "}"
        source = (f"read_json({_quote(str(staged))}, format = 'newline_delimited', columns = {spec})" if rows else
                  "(SELECT " + ", ".join(f"NULL::{t} AS \"{c}\"" for c, t in columns.items()) + " WHERE false)")
        con.execute(f"COPY (SELECT * FROM {source}) TO {_quote(str(tmp))} (FORMAT parquet)")
    finally:
        con.close()
        staged.unlink(missing_ok=True)
    tmp.replace(path)
    path.chmod(0o600)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_TYPES = {"patient": "VARCHAR", "verdict": "VARCHAR", "treatment_resistance": "VARCHAR", "severity": "VARCHAR",
          "contraindications_present": "VARCHAR[]", "contraindications_unknown": "VARCHAR[]", "workup": "VARCHAR[]",
          "data_gaps": "VARCHAR[]", "course_current": "BOOLEAN", "course_phase": "VARCHAR",
          "course_response": "VARCHAR", "policy": "VARCHAR", "as_of": "VARCHAR"}


def write_worklists(out: Path, results: Sequence[PatientResult], with_assessments: bool) -> None:
    rows = [r.row for r in results]
    write_private(out / "worklist.csv", _csv(rows))
    _parquet(out / "worklist.parquet", _TYPES, [[row[c] for c in WORKLIST_COLUMNS] for row in rows])
    # Safety surveillance: patients in a current course who now have a contraindication on record.
    watch = [row for row in rows if row["course_current"] and row["contraindications_present"]]
    write_private(out / "current-course-contraindicated.csv", _csv(watch))
    if with_assessments:
        _parquet(out / "assessments.parquet", {"patient": "VARCHAR", "assessment": "VARCHAR"},
                 [[r.patient, r.assessment] for r in results])


def summarize(results: Sequence[PatientResult]) -> dict[str, Any]:
    verdicts = Counter(r.row["verdict"] for r in results)
    present = Counter(c for r in results for c in r.row["contraindications_present"])
    unknown = Counter(c for r in results for c in r.row["contraindications_unknown"])
    workup = Counter(w for r in results for w in r.row["workup"])
    gaps = Counter(g for r in results for g in r.row["data_gaps"])
    return {
        "patients": len(results),
        "verdicts": dict(sorted(verdicts.items())),
        "contraindications": {c: {"present": present.get(c, 0), "unknown": unknown.get(c, 0)}
                              for c in sorted(set(present) | set(unknown))},
        "workup": dict(sorted(workup.items())),
        "data_gaps": dict(sorted(gaps.items())),
        "current_course": sum(1 for r in results if r.row["course_current"]),
        "current_course_contraindicated": sum(1 for r in results if r.row["course_current"]
                                              and r.row["contraindications_present"]),
    }


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    write_private(out / "summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _bars(title: str, counts: dict[str, int]) -> str:
    """A horizontal bar chart as SVG (server-rendered, as the review app's charts are: no script, no CDN)."""
    if not counts:
        return f"<h2>{escape(title)}</h2><p>None.</p>"
    top = max(counts.values()) or 1
    height = 24 * len(counts) + 10
    bars = []
    for i, (name, value) in enumerate(counts.items()):
        y = 5 + 24 * i
        width = 420 * value / top
        bars.append(f'<text x="195" y="{y + 15}" text-anchor="end" font-size="12">{escape(name)}</text>'
                    f'<rect x="200" y="{y}" width="{width:.1f}" height="18" fill="#0b5cad"></rect>'
                    f'<text x="{205 + width:.1f}" y="{y + 14}" font-size="12">{value}</text>')
    return (f'<h2>{escape(title)}</h2><svg viewBox="0 0 680 {height}" width="680" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">'
            + "".join(bars) + "</svg>")


def write_report(out: Path, summary: dict[str, Any], results: Sequence[PatientResult], first_rows: int = 25) -> None:
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(';'.join(r.row[c]) if c in _LISTS else r.row[c])}</td>"
                         for c in ("patient", "verdict", "contraindications_present", "workup", "course_response"))
        + "</tr>" for r in results[:first_rows])
    inputs = summary.get("inputs", {})
    page = Markup(  # noqa: S704 - every value from data is escape()d above
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ketamine-cds screen</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:760px;margin:2rem auto;color:#1b1f24}"
        "table{border-collapse:collapse}td,th{border:1px solid #d5dbe1;padding:.2rem .4rem;font-size:.85rem}</style>"
        "</head><body><h1>Ketamine/esketamine screening</h1>"
        f"<p>{summary['patients']} patients · policy {escape(summary['run']['policy'])} · as of "
        f"{escape(summary['run']['as_of'])}. Data that could not be obtained is counted as unknown, never absent.</p>"
        + _bars("Verdicts", summary["verdicts"])
        + _bars("Contraindications present", {k: v["present"] for k, v in summary["contraindications"].items()
                                              if v["present"]})
        + _bars("Contraindications unknown", {k: v["unknown"] for k, v in summary["contraindications"].items()
                                              if v["unknown"]})
        + _bars("Work-up", summary["workup"])
        + f"<h2>Worklist (first {min(first_rows, len(results))} rows)</h2><table><tr><th>patient</th><th>verdict</th>"
        "<th>contraindications</th><th>work-up</th><th>course response</th></tr>" + rows + "</table>"
        + "<h2>Inputs</h2><ul>"
        + "".join(f"<li>{escape(t)}: {n['files']} files, {n['lines']} lines</li>"
                  for t, n in sorted(inputs.get("by_type", {}).items()))
        + f"<li>missing types: {escape(', '.join(inputs.get('missing_types', [])) or 'none')}</li></ul>"
        "<p>Decision support, not a substitute for clinical judgement.</p></body></html>")
    write_private(out / "report.html", str(page).encode("utf-8"))

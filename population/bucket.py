"""One bucket of patients → their assessments, by the same core as the card: one pool per patient, the Medications
it references added from the broadcast table, ``eligibility.assess_pool``. Every engine calls this function."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from eligibility import (
    Assessment,
    Criterion,
    Policy,
    Presence,
    ReasonKind,
    ResponseClass,
    Verdict,
    assess_pool,
    assessment_to_json,
)
from fhir_mapping import DataGap, ResourcePool, add_json
from fhir_mapping.loading import validate_resource

from .inventory import RULE_TYPES

#: Worklist order: what a team acts on first. Current-course patients with a contraindication now, then those whose
#: benefit at the end of induction is overdue (issue #23), then by verdict.
VERDICT_ORDER = {Verdict.CONTRAINDICATED: 2, Verdict.REASSESS: 3, Verdict.NEEDS_WORKUP: 4, Verdict.CANDIDATE: 5,
                 Verdict.CONTINUE: 6, Verdict.NOT_INDICATED: 7}


@dataclass(frozen=True, slots=True)
class PatientResult:
    patient: str
    priority: int
    row: dict[str, Any]
    #: The exact ``evaluate --format json`` document.
    assessment: str


def priority(a: Assessment) -> int:
    course = a.course
    if course is not None and course.current and a.verdict is Verdict.CONTRAINDICATED:
        return 0
    if course is not None and course.response_due and course.response is ResponseClass.UNKNOWN:
        return 1
    return VERDICT_ORDER[a.verdict]


def pseudonym(patient: str, key: bytes | None) -> str:
    """The patient id, or its HMAC-SHA256 under the site's key (stable across runs, not reversible without it)."""
    if key is None:
        return patient
    return hmac.new(key, patient.encode("utf-8"), hashlib.sha256).hexdigest()


def worklist_row(a: Assessment, patient: str) -> dict[str, Any]:
    course = a.course
    return {
        "patient": patient,
        "verdict": a.verdict.value,
        "treatment_resistance": a.treatment_resistance.status.value,
        "severity": a.severity.status.value,
        "contraindications_present": [c.value for c, f in a.contraindications.items()
                                      if f.status is Presence.PRESENT],
        "contraindications_unknown": [c.value for c, f in a.contraindications.items()
                                      if f.status is Presence.UNKNOWN],
        "workup": [w.kind.value for w in a.workup],
        "data_gaps": list(dict.fromkeys(_gap_kind(g) for g in a.data_gaps)),
        "course_current": bool(course and course.current),
        "course_phase": course.phase.value if course and course.phase else None,
        "course_response": course.response.value if course else None,
        "unknown": [r.code for r in a.reasons if r.kind is ReasonKind.UNKNOWN],
        "trd": a.treatment_resistance.status is Criterion.MET,
        "policy": a.policy,
        "as_of": a.as_of.isoformat(),
    }


def _gap_kind(described: str) -> str:
    """'Medication could not be obtained (unresolved_reference)': what and why, without the record ids of its detail
    (the worklist and the summary carry no resource id; the assessment keeps the whole text)."""
    head, sep, _ = described.partition(")")
    return head + sep if sep else described


def _medication_refs(resources: Sequence[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for res in resources:
        ref = res.get("medicationReference")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("Medication/"):
            found.append(target.split("/", 1)[1])
    return found


Row = tuple[str, int, int, str]  # (patient key, file index, line number, line)


def parquet_rows(paths: Sequence[Path]) -> list[Row]:
    """The rows of one bucket's Parquet parts (the local engine's buckets), in (patient, file, line) order."""
    con = duckdb.connect()
    try:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        # DuckDB gives (str, int, int, str) for these columns (VARCHAR, INTEGER, BIGINT, VARCHAR) already.
        rows: list[Row] = con.execute(f"SELECT pkey, f, n, line FROM read_parquet([{files}]) "
                                      "ORDER BY pkey, f, n").fetchall()
    finally:
        con.close()
    return rows


def _patients(rows: Iterable[Row]) -> Iterator[tuple[str, list[tuple[int, int, str]]]]:
    """(patient key, its lines in (file, line) order), patient by patient, from rows sorted by (patient, file, line)."""
    current: str | None = None
    lines: list[tuple[int, int, str]] = []
    for pkey, f, n, line in rows:
        if pkey != current:
            if current is not None:
                yield current, lines
            current, lines = pkey, []
        lines.append((f, n, line))
    if current is not None:
        yield current, lines


def assess_patient(key: str, lines: Sequence[tuple[int, int, str]], file_names: Sequence[str],
                   medications: dict[str, tuple[int, int, str]], gaps: Sequence[DataGap], policy: Policy,
                   as_of: dt.date) -> Assessment:
    pool = ResourcePool(cache_validation=False)  # each resource of an export is seen once: the cache never hits
    for f, n, line in lines:
        add_json(pool, json.loads(line), f"{file_names[f]}:{n}")
    for mid in _medication_refs(pool.resources):
        if (found := medications.get(mid)) is not None:
            f, n, line = found
            add_json(pool, json.loads(line), f"{file_names[f]}:{n}")
    pool.gaps.extend(gaps)
    return assess_pool(pool, policy, as_of, patient_id=key)[0]


#: The cyclic collector's young-generation threshold in a worker (CPython's default: 700 allocations). An
#: assessment allocates tens of thousands of short-lived objects, nearly all freed by reference counting: collecting
#: after every 700 of them cost about 4 % of a worker's time and found next to nothing.
WORKER_GC_THRESHOLD = (10_000, 50, 50)


def prepare_worker() -> None:
    """Ready a process that assesses buckets (either engine's worker), once, before its first bucket: the validation
    models loaded, then everything loaded so far (modules, models: alive as long as the process) frozen out of the
    cyclic collector's walks, and the collector run less often. Answers are unchanged: this is only about when the
    collector looks for garbage (together about 8 % of an assessment)."""
    for rtype in RULE_TYPES:
        validate_resource({"resourceType": rtype})
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLD)


def load_medications(paths: Sequence[Path]) -> dict[str, tuple[int, int, str]]:
    """The broadcast table: Medication id → its first line in (file, line) order, from every group's Medications."""
    if not paths:
        return {}
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT id, f, n, line FROM read_parquet(?) ORDER BY f, n",
                           [[str(p) for p in paths]]).fetchall()
    finally:
        con.close()
    table: dict[str, tuple[int, int, str]] = {}
    for mid, f, n, line in rows:
        table.setdefault(str(mid), (int(f), int(n), str(line)))
    return table


def assess_bucket(rows: Iterable[Row], file_names: Sequence[str], medications: dict[str, tuple[int, int, str]],
                  gaps: Sequence[DataGap], policy: Policy, as_of: dt.date,
                  pseudonymize_key: bytes | None = None) -> list[PatientResult]:
    """Every patient of one bucket, assessed: ``rows`` sorted by (patient, file, line), whichever engine made them."""
    results = []
    for key, lines in _patients(rows):
        a = assess_patient(key, lines, file_names, medications, gaps, policy, as_of)
        name = pseudonym(key, pseudonymize_key)
        document = "" if pseudonymize_key else json.dumps(assessment_to_json(a), indent=2)
        results.append(PatientResult(name, priority(a), worklist_row(a, name), document))
    return results


def result_line(r: PatientResult) -> str:
    """One patient's result as a line of its bucket's result file (every engine writes the same)."""
    return json.dumps([r.patient, r.priority, r.row, r.assessment])


def result_lines(results: Sequence[PatientResult]) -> bytes:
    return "".join(result_line(r) + "\n" for r in results).encode("utf-8")


def read_results(text: str) -> list[PatientResult]:
    return [PatientResult(*json.loads(line)) for line in text.splitlines()]

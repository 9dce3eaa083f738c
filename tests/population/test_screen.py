"""``ketamine-cds screen``: the card's rules over a whole Bulk export, with the card's answer for every patient."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from eligibility import assess_pool, assessment_to_json, load_policy
from fhir_mapping import ResourcePool, add_json, patient_key
from fixtures.build_bulk import build
from ketamine_cds.cli import main
from population import Interrupted, ScreenError, ScreenOptions, run_screen
from population.partition import memory_share

from ..conftest import server_comparable_bundles

AS_OF = dt.date(2026, 11, 1)
POLICY = load_policy("default")
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bulk")
    build(folder, clones=1)
    return folder


def screen(bulk: Path, out: Path, **changes: Any) -> dict[str, Any]:
    opts = ScreenOptions(bulk=(bulk,), out=out, as_of=AS_OF, policy=POLICY, policy_text=b"default",
                         workers=changes.pop("workers", 2), **changes)
    return run_screen(opts)


def rows(path: Path, sql: str = "SELECT * FROM t ORDER BY ALL") -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def assessments(out: Path) -> dict[str, dict[str, Any]]:
    return {p: json.loads(doc) for p, doc in rows(out / "assessments.parquet")}


def outputs(out: Path) -> dict[str, Any]:
    """What must be identical between runs: every output but the run's own timings and bucket count."""
    summary = json.loads((out / "summary.json").read_text())
    del summary["run"]["timings"], summary["run"]["buckets"], summary["run"]["workers"]
    return {"worklist.csv": (out / "worklist.csv").read_bytes(), "summary": summary,
            "worklist.parquet": rows(out / "worklist.parquet", "SELECT * FROM t"),
            "assessments": rows(out / "assessments.parquet", "SELECT * FROM t")}


def test_every_patient_gets_the_answer_evaluate_gives(export: Path, tmp_path: Path) -> None:
    summary = screen(export, tmp_path / "out")
    found = assessments(tmp_path / "out")
    patients = sorted(found)
    fixtures = [p for p in FIXTURES.glob("*.json") if not p.name.endswith(".expected.json")]
    assert summary["patients"] == len(patients) == len(fixtures)
    lines = _export_lines(export)
    for pid in patients:
        a, _ = assess_pool(_alone(lines, pid), POLICY, AS_OF, pid)  # evaluate on that patient alone
        assert found[pid] == assessment_to_json(a), pid


def _export_lines(export: Path) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for f in sorted(export.rglob("*.ndjson*")):
        text = gzip.decompress(f.read_bytes()).decode() if f.name.endswith(".gz") else f.read_text()
        out += [(f.name, n, res) for n, line in enumerate(text.splitlines(), 1) if line.strip()
                if "resourceType" in (res := json.loads(line))]  # log.ndjson's lines are not resources
    return out


def _alone(lines: list[tuple[str, int, dict[str, Any]]], pid: str) -> ResourcePool:
    """The patient's own lines, and every Medication, keyed by the mapping's own rule (not the screen's SQL)."""
    pool = ResourcePool()
    for name, n, res in lines:
        owner = res.get("id") if res.get("resourceType") == "Patient" else patient_key(res)
        if owner == pid or res.get("resourceType") == "Medication":
            add_json(pool, res, f"{name}:{n}")
    return pool


def test_every_clone_reaches_its_fixtures_expected_assessment(export: Path, tmp_path: Path) -> None:
    screen(export, tmp_path / "out")
    found = assessments(tmp_path / "out")
    for bundle in server_comparable_bundles():  # a searchset's own OperationOutcome has no place in an export
        expected_file = bundle.with_name(bundle.stem + ".expected.json")
        expected = json.loads(expected_file.read_text())
        got = found[expected["patient"].removeprefix("Patient/") + "-c0"]
        assert got["verdict"] == expected["verdict"], expected_file.name
        if "course.response" in expected:
            assert got["course"]["response"] == expected["course.response"], expected_file.name


def test_the_worklist_puts_current_course_safety_first_and_names_its_columns(export: Path, tmp_path: Path) -> None:
    screen(export, tmp_path / "out")
    lines = (tmp_path / "out" / "worklist.csv").read_text().splitlines()
    assert lines[0].startswith("patient,verdict,treatment_resistance,severity,contraindications_present,"
                               "contraindications_unknown,workup,data_gaps")
    first = lines[1].split(",")
    assert first[:2] == ["kc-43-c0", "contraindicated"]  # in a course, a pregnancy since the first dose
    assert lines[2].split(",")[:2] == ["kc-44-c0", "needs_workup"]  # benefit at the end of induction overdue
    watch = (tmp_path / "out" / "current-course-contraindicated.csv").read_text().splitlines()
    assert [w.split(",")[0] for w in watch[1:]] == ["kc-43-c0"]


@pytest.mark.parametrize("buckets", [1, 7, 64])
def test_any_bucket_count_gives_the_same_output(export: Path, tmp_path: Path, buckets: int) -> None:
    reference = tmp_path / "reference"
    screen(export, reference, buckets=3)
    screen(export, tmp_path / "out", buckets=buckets, workers=1 if buckets == 1 else 2)
    assert outputs(tmp_path / "out") == outputs(reference)


def test_any_worker_count_gives_the_same_output(export: Path, tmp_path: Path) -> None:
    # The workers partition groups of files side by side (two groups per worker): 3 workers, 6 groups.
    reference = tmp_path / "reference"
    screen(export, reference, buckets=5, workers=1)
    screen(export, tmp_path / "out", buckets=5, workers=3)
    assert outputs(tmp_path / "out") == outputs(reference)


def test_the_memory_limit_is_shared_by_the_duckdbs_that_run_at_once() -> None:
    share = memory_share("256MB", 2)
    assert share.endswith("B") and 0.99 * 128e6 <= 2 * int(share[:-1]) <= 256e6
    assert int(memory_share("2GiB", 4)[:-1]) == 2**29
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit = '{share}'")  # DuckDB takes the share as it is
    finally:
        con.close()
    with pytest.raises(ValueError):
        memory_share("lots", 2)


def _copy_without(export: Path, target: Path, rtype: str) -> Path:
    shutil.copytree(export, target)
    for f in target.iterdir():
        if re.match(rf"(\d+\.)?{rtype}\.", f.name):  # Type.000.ndjson, 1.Type.ndjson, Type.002.ndjson.gz
            f.unlink()
    return target


def test_a_type_missing_from_the_export_is_unknown_for_every_patient(export: Path, tmp_path: Path) -> None:
    bulk = _copy_without(export, tmp_path / "bulk", "AllergyIntolerance")
    summary = screen(bulk, tmp_path / "out")
    assert summary["inputs"]["missing_types"] == ["AllergyIntolerance"]
    assert "candidate" not in summary["verdicts"] and "continue" not in summary["verdicts"]
    for pid, a in assessments(tmp_path / "out").items():
        assert a["contraindications"]["ketamine_hypersensitivity"]["status"] in ("unknown", "present"), pid
    allowed = screen(bulk, tmp_path / "allowed", allow_missing_types=frozenset({"AllergyIntolerance"}))
    assert allowed["run"]["allow_missing_types"] == ["AllergyIntolerance"]
    assert allowed["verdicts"].get("candidate", 0) > 0


def test_an_error_file_for_observations_is_a_gap_for_every_patient(export: Path, tmp_path: Path) -> None:
    bulk = tmp_path / "bulk"
    shutil.copytree(export, bulk)
    (bulk / "error").mkdir()
    (bulk / "error" / "OperationOutcome.ndjson").write_text(json.dumps({
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                       "diagnostics": "Observation export failed: timeout"}]}) + "\n")
    summary = screen(bulk, tmp_path / "out")
    assert summary["inputs"]["error_types"] == ["Observation"]
    assert "candidate" not in summary["verdicts"]
    for a in assessments(tmp_path / "out").values():
        assert a["severity"]["status"] in ("unknown", "not_met") or a["course"] is not None
        assert any("Observation could not be obtained" in g for g in a["data_gaps"])


def test_resume_after_an_interruption_gives_the_same_output(export: Path, tmp_path: Path) -> None:
    screen(export, tmp_path / "reference", buckets=6)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        screen(export, out, buckets=6, stop_after_buckets=2)
    state = json.loads((out / "_work" / "state.json").read_text())
    assert state["partitioned"] and len(list((out / "_work" / "results").glob("*.jsonl"))) >= 2
    screen(export, out, buckets=6, resume=True)
    assert outputs(out) == outputs(tmp_path / "reference")
    assert not (out / "_work").exists()


def test_resume_refuses_a_changed_input(export: Path, tmp_path: Path) -> None:
    bulk = tmp_path / "bulk"
    shutil.copytree(export, bulk)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        screen(bulk, out, buckets=4, stop_after_buckets=1)
    with (bulk / "Patient.000.ndjson").open("a") as fh:
        fh.write(json.dumps({"resourceType": "Patient", "id": "late-arrival"}) + "\n")
    with pytest.raises(ScreenError, match="changed since the interrupted run"):
        screen(bulk, out, buckets=4, resume=True)


SENTINEL_NAME, SENTINEL_MRN = "Zyxwvuts", "MRN-99887766"


def _with_sentinel(export: Path, bulk: Path) -> None:
    shutil.copytree(export, bulk)
    with (bulk / "Patient.000.ndjson").open("a") as fh:
        fh.write(json.dumps({"resourceType": "Patient", "id": "sentinel-1", "gender": "female",
                             "name": [{"family": SENTINEL_NAME, "given": ["Ada"]}],
                             "identifier": [{"system": "urn:mrn", "value": SENTINEL_MRN}]}) + "\n")


def test_no_name_or_mrn_reaches_stderr_or_the_summary_and_files_are_private(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bulk, out = tmp_path / "bulk", tmp_path / "out"
    _with_sentinel(export, bulk)
    code = main(["screen", "--bulk", str(bulk), "--out", str(out), "--as-of", "2026-11-01", "--workers", "2",
                 "--progress", "lines"])
    captured = capsys.readouterr()
    assert code == 0
    for text in (captured.err, captured.out, (out / "summary.json").read_text(), (out / "report.html").read_text(),
                 (out / "worklist.csv").read_text()):
        assert SENTINEL_NAME not in text and SENTINEL_MRN not in text
    assert "sentinel-1" not in captured.err and "kc-01" not in captured.err  # counts only
    assert not (out / "_work").exists()
    assert out.stat().st_mode & 0o777 == 0o700
    assert {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()} == {
        name: 0o600 for name in ("worklist.csv", "worklist.parquet", "assessments.parquet", "summary.json",
                                 "report.html", "current-course-contraindicated.csv")}


def test_pseudonymized_outputs_hold_no_real_id(export: Path, tmp_path: Path) -> None:
    key = tmp_path / "site.key"
    key.write_bytes(b"0123456789abcdef-site-secret")
    out = tmp_path / "out"
    assert main(["screen", "--bulk", str(export), "--out", str(out), "--as-of", "2026-11-01", "--workers", "2",
                 "--progress", "none", "--pseudonymize-key", str(key)]) == 0
    assert not (out / "assessments.parquet").exists()
    everything = "".join(f.read_bytes().decode("utf-8", "replace") for f in out.iterdir())
    assert "kc-" not in everything
    first = (out / "worklist.csv").read_text().splitlines()[1].split(",")[0]
    assert len(first) == 64  # HMAC-SHA256, hex
    again = tmp_path / "again"
    main(["screen", "--bulk", str(export), "--out", str(again), "--as-of", "2026-11-01", "--workers", "1",
          "--progress", "none", "--pseudonymize-key", str(key)])
    assert (again / "worklist.csv").read_bytes() == (out / "worklist.csv").read_bytes()  # stable across runs


def test_awkward_input_is_handled_and_counted(export: Path, tmp_path: Path) -> None:
    bulk = tmp_path / "bulk"
    shutil.copytree(export, bulk)
    (bulk / "deleted").mkdir()
    (bulk / "deleted" / "del.ndjson").write_text(json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                             "entry": []}) + "\n")
    with (bulk / "Condition.000.ndjson").open("ab") as fh:
        fh.write(b'{"resourceType": "Condition", "id": "broken"\n')  # malformed JSON
        fh.write(b'{"resourceType": "Condition", "id": "latin-\xe9", "subject": {"reference": "Patient/x"}}\n')
        fh.write(b"\n")
    with gzip.open(bulk / "extra.ndjson.gz", "wt") as gz:
        gz.write(json.dumps({"resourceType": "Observation", "id": "no-subject", "status": "final"}) + "\n")
    summary = screen(bulk, tmp_path / "out")
    plain = screen(export, tmp_path / "plain")
    problems = summary["inputs"]["problems"]
    assert problems["Condition.000.ndjson"] == {"invalid_json": 1, "invalid_encoding": 1}
    assert problems["extra.ndjson.gz"] == {"unattributed": 1}
    assert summary["inputs"]["by_kind"] == {**plain["inputs"]["by_kind"], "data": plain["inputs"]["by_kind"]["data"]
                                            + 1, "deleted": 1}
    assert summary["export"]["transactionTime"] == "2026-11-01T06:00:00Z"
    assert summary["patients"] == plain["patients"]  # the broken lines were counted, not assessed


@pytest.mark.parametrize(("args", "message"), [
    (["--bulk", "/nonexistent/folder"], "no such folder"),
    (["--bulk", "{export}", "--allow-missing-types", "Nonsense"], "unknown resource type Nonsense"),
    (["--bulk", "{export}", "--workers", "0"], "at least 1"),
    (["--bulk", "{export}", "--memory-limit", "lots"], "--memory-limit 'lots': give a size"),
    (["--bulk", "{export}", "--memory-limit", "256"], "--memory-limit '256': give a size"),
    (["--bulk", "{export}", "--engine", "dask", "--scheduler", "tcp://192.0.2.7:8786"], "must be tls://"),
    (["--bulk", "{export}", "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is for --engine dask"),
    ([], "needs --bulk"),
])
def test_bad_arguments_are_one_line_and_exit_2(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    argv = ["screen", "--out", str(tmp_path / "out"), *(a.replace("{export}", str(export)) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_exits_130_with_how_to_resume_and_resume_finishes_identically(export: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    reference = tmp_path / "reference"
    screen(export, reference, buckets=48)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ketamine_cds.cli", "screen", "--bulk", str(export), "--out", str(out),
           "--as-of", "2026-11-01", "--workers", "1", "--buckets", "48", "--progress", "none"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    results = out / "_work" / "results"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(results.glob("*.jsonl"))) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"--resume" in err and b"Traceback" not in err
    assert 2 <= len(list(results.glob("*.jsonl"))) < 48
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert outputs(out) == outputs(reference)


def test_patient_organised_input_gives_the_same_answers(export: Path, tmp_path: Path) -> None:
    """organizeOutputBy=Patient: a Parameters header before each patient's block, one block continued in a second
    file. Every resource still names its patient, so the same key gives the same answers."""
    by_patient: dict[str, list[dict[str, Any]]] = {}
    medications = []
    for _name, _n, res in _export_lines(export):
        if res["resourceType"] == "Medication":
            medications.append(res)
            continue
        owner = res["id"] if res["resourceType"] == "Patient" else patient_key(res)
        by_patient.setdefault(str(owner), []).append(res)
    bulk = tmp_path / "by-patient"
    bulk.mkdir()
    blocks = []
    for pid in sorted(by_patient):
        header = {"resourceType": "Parameters", "parameter": [
            {"name": "header", "valueReference": {"reference": f"Patient/{pid}"}}]}
        blocks.append([header, *by_patient[pid]])
    first, second = blocks[: len(blocks) // 2], blocks[len(blocks) // 2:]
    split = second[0]
    cont = {"resourceType": "Parameters", "parameter": [{"name": "continuesInFile", "valueUri": "output.2.ndjson"}]}
    part1 = [r for b in first for r in b] + split[: len(split) // 2] + [cont]
    part2 = split[len(split) // 2:] + [r for b in second[1:] for r in b]
    (bulk / "output.1.ndjson").write_text("".join(json.dumps(r) + "\n" for r in part1))
    (bulk / "output.2.ndjson").write_text("".join(json.dumps(r) + "\n" for r in part2))
    (bulk / "Medication.ndjson").write_text("".join(json.dumps(r) + "\n" for r in medications))
    screen(export, tmp_path / "flat")
    screen(bulk, tmp_path / "out")

    def comparable(out: Path) -> dict[str, Any]:
        found = assessments(out)
        for a in found.values():
            a["skipped_entries"] = [s.split(": ", 1)[1] for s in a["skipped_entries"]]  # file:line differ
        return found

    assert comparable(tmp_path / "out") == comparable(tmp_path / "flat")
    assert (tmp_path / "out" / "worklist.csv").read_bytes() == (tmp_path / "flat" / "worklist.csv").read_bytes()


def test_a_worker_process_that_dies_is_one_line_and_resume_finishes_identically(export: Path,
                                                                                tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    reference = tmp_path / "reference"
    screen(export, reference, buckets=48)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ketamine_cds.cli", "screen", "--bulk", str(export), "--out", str(out),
           "--as-of", "2026-11-01", "--workers", "1", "--buckets", "48", "--progress", "none"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    results = out / "_work" / "results"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(results.glob("*.jsonl"))) < 1:
        time.sleep(0.05)
    workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
               if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert workers, "no pool worker to kill: the run ended first"
    os.kill(workers[0], signal.SIGKILL)  # the pool's only worker (--workers 1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err.decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "assessment failed in a worker" in lines[0] and "--resume" in lines[0], lines
    assert results.exists() and list(results.glob("*.jsonl"))
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert outputs(out) == outputs(reference)

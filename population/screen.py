"""``ketamine-cds screen``: the order-time rules over a whole Bulk FHIR export.

Scan (files by content) → partition (DuckDB: key by patient, push the policy's Observation horizon down, hash into
Parquet buckets) → assess (a process pool; each bucket by ``population.bucket.assess_bucket``, the card's own core)
→ write (worklist, assessments, summary, report). Counts only on stderr: never a patient id, name or resource text.
State under ``OUTDIR/_work`` lets an interrupted run resume; it is deleted when the run succeeds.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import multiprocessing
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

from eligibility import Policy
from fhir_mapping import DataGap, GapReason, ResourceType, domains_of

from .bucket import (
    PatientResult,
    assess_bucket,
    load_medications,
    parquet_rows,
    prepare_worker,
    read_results,
    result_lines,
)
from .inventory import RULE_TYPES, BulkFile, Inventory, scan
from .outputs import ordered, summarize, write_private, write_report, write_summary, write_worklists
from .partition import Partitioned, bucket_indices, bucket_parts, medication_parts, memory_share, partition


class ScreenError(Exception):
    """The screen cannot run as asked: one line for the user (exit 2), never a traceback."""


class Interrupted(Exception):
    """Stopped by SIGINT/SIGTERM; the state to resume is kept."""


@dataclass(frozen=True, slots=True)
class ScreenOptions:
    bulk: tuple[Path, ...]
    out: Path
    as_of: dt.date
    policy: Policy
    policy_text: bytes
    workers: int = 1
    buckets: int | None = None
    memory_limit: str | None = None
    resume: bool = False
    progress: str = "none"
    allow_missing_types: frozenset[str] = frozenset()
    pseudonymize_key: bytes | None = None
    engine: str = "local"
    #: ``--engine dask``: join this scheduler (``tcp://`` on this machine, or ``tls://``); None starts a LocalCluster.
    scheduler: str | None = None
    #: For tests of resume: stop (as SIGINT does) after this many buckets are written.
    stop_after_buckets: int | None = field(default=None, repr=False)


def _version() -> str:
    try:
        return version("ketamine-cds")
    except PackageNotFoundError:  # pragma: no cover - a source tree without an install
        return "unknown"


class _Progress:
    """One stderr line per phase, at most once a second on a TTY (``bar``), or a line every 10 s (``lines``)."""

    def __init__(self, mode: str) -> None:
        self.mode = "bar" if mode == "auto" and sys.stderr.isatty() else "none" if mode == "auto" else mode
        self._last = 0.0

    def __call__(self, message: str, force: bool = False) -> None:
        if self.mode == "none":
            return
        now = time.monotonic()
        every = 1.0 if self.mode == "bar" else 10.0
        if not force and now - self._last < every:
            return
        self._last = now
        end = "\r" if self.mode == "bar" and not force else "\n"
        print(f"ketamine-cds screen: {message}", file=sys.stderr, end=end, flush=True)


def _gaps(inventory: Inventory, allowed: frozenset[str], seen: Sequence[str] = ()) -> list[DataGap]:
    """A type the rules read with no file, or one the export reported an error for: unknown for every patient."""
    gaps = []
    for rtype in inventory.missing_types(seen):
        if rtype not in allowed:
            gaps.append(DataGap(ResourceType(rtype), GapReason.NOT_PROVIDED, "no file of this type in the export",
                                domains_of(ResourceType(rtype))))
    errored = set(inventory.errors)
    for rtype in (RULE_TYPES if "*" in errored else [t for t in RULE_TYPES if t in errored]):
        if rtype not in allowed:
            gaps.append(DataGap(ResourceType(rtype), GapReason.SERVER_ERROR,
                                "the export reported an error for this type", domains_of(ResourceType(rtype))))
    return gaps


def _fingerprint(opts: ScreenOptions, inventory: Inventory, buckets: int) -> dict[str, Any]:
    return {"input": inventory.fingerprint(), "policy_sha256": hashlib.sha256(opts.policy_text).hexdigest(),
            "as_of": opts.as_of.isoformat(), "buckets": buckets,
            "allow_missing_types": sorted(opts.allow_missing_types),
            "pseudonymized": opts.pseudonymize_key is not None, "engine": opts.engine}


# Process-pool workers: the broadcast table and the run's settings, loaded once per worker.
_WORKER: dict[str, Any] = {}


def _init_worker(work: Path, file_names: list[str], policy: Policy, as_of: dt.date, key: bytes | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; workers finish or are ended
    _WORKER.update(work=work, file_names=file_names, policy=policy, as_of=as_of, key=key)
    prepare_worker()


def _run_partition(group: int, files: list[tuple[int, BulkFile]], buckets: int, horizon: dt.date,
                   memory_limit: str | None) -> tuple[Partitioned, float]:
    """This group's part of the buckets, and the CPU seconds it took (the summary's phase timings)."""
    cpu = time.process_time()
    parted = partition(files, _WORKER["work"], buckets, horizon, memory_limit, 1, group)
    return parted, time.process_time() - cpu


def _run_bucket(bucket: int, result_file: Path, gaps: list[DataGap]) -> tuple[int, float]:
    """The bucket's patients assessed into ``result_file``: how many, and the CPU seconds it took."""
    cpu = time.process_time()
    if "medications" not in _WORKER:  # written by the partition step, which may have run in another worker
        _WORKER["medications"] = load_medications(medication_parts(_WORKER["work"]))
    results = assess_bucket(parquet_rows(bucket_parts(_WORKER["work"], bucket)), _WORKER["file_names"],
                            _WORKER["medications"], gaps, _WORKER["policy"], _WORKER["as_of"], _WORKER["key"])
    write_private(result_file, result_lines(results))
    return len(results), time.process_time() - cpu


def _read_results(files: Sequence[Path]) -> list[PatientResult]:
    return [r for f in files for r in read_results(f.read_text(encoding="utf-8"))]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_screen(opts: ScreenOptions) -> dict[str, Any]:
    """Screen the export; returns the summary. Raises ScreenError (bad input) or Interrupted (resume later)."""
    if opts.engine not in ("local", "dask"):
        raise ScreenError(f"engine {opts.engine!r}: use --engine local or --engine dask")
    if opts.engine == "dask":
        try:
            _dask().check_scheduler(opts.scheduler) if opts.scheduler else None
        except _dask().ClusterProblem as exc:
            raise ScreenError(str(exc)) from exc
    if opts.memory_limit:
        try:
            memory_share(opts.memory_limit, 1)
        except ValueError as exc:
            raise ScreenError(f"--memory-limit {opts.memory_limit!r}: give a size, e.g. 256MB or 2GB") from exc
    for folder in opts.bulk:
        if not folder.is_dir():
            raise ScreenError(f"{folder}: no such folder")
    progress = _Progress(opts.progress)
    timings: dict[str, float] = {}
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _on_signal)
    previous_int = signal.signal(signal.SIGINT, _on_signal)
    try:
        opts.out.mkdir(parents=True, exist_ok=True, mode=0o700)
        opts.out.chmod(0o700)
        work = opts.out / "_work"
        inventory = scan(opts.bulk)
        timings["scan_s"] = round(time.monotonic() - started, 3)
        data_files = inventory.data_files()
        progress(f"scan: {len(inventory.files)} files, {len(data_files)} with data the rules read", force=True)
        total = sum(f.size for f in data_files)
        # Buckets of at most 32 MB of input, and at least 8 per worker: the last bucket to finish leaves the other
        # workers idle, so the smaller the buckets, the shorter that tail (each costs only a Parquet read more).
        buckets = opts.buckets or max(opts.workers * 8, -(-total // (32 << 20)))
        state_file = work / "state.json"
        fingerprint = _fingerprint(opts, inventory, buckets)
        if opts.resume and state_file.exists():
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if state.get("fingerprint") != fingerprint:
                raise ScreenError("the input, policy, date, engine or bucket count changed since the interrupted run: "
                                  "start again without --resume")
        else:
            if opts.resume:
                progress("resume: no interrupted run found, starting afresh", force=True)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(mode=0o700)
            state = {"fingerprint": fingerprint, "partitioned": False}
            write_private(state_file, json.dumps(state).encode("utf-8"))
        results_dir = work / "results"
        results_dir.mkdir(exist_ok=True, mode=0o700)
        if opts.engine == "dask":
            done = _on_dask(opts, inventory, data_files, buckets, state, results_dir, progress, timings)
        else:
            done = _locally(opts, inventory, data_files, buckets, state, work, results_dir, progress, timings)
        t0 = time.monotonic()
        results = ordered(_read_results(done))
        write_worklists(opts.out, results, with_assessments=opts.pseudonymize_key is None)
        summary = summarize(results)
        summary["inputs"] = _inputs(inventory, state.get("counts", {}), state.get("types_seen", []))
        timings["write_s"] = round(time.monotonic() - t0, 3)
        timings["total_s"] = round(time.monotonic() - started, 3)
        summary["run"] = {"version": _version(), "policy": opts.policy.id,
                          "policy_sha256": fingerprint["policy_sha256"], "as_of": opts.as_of.isoformat(),
                          "engine": opts.engine, "workers": opts.workers, "buckets": buckets,
                          "allow_missing_types": sorted(opts.allow_missing_types),
                          "pseudonymized": opts.pseudonymize_key is not None, "timings": timings}
        summary["export"] = inventory.export
        write_summary(opts.out, summary)
        write_report(opts.out, summary, results)
        shutil.rmtree(work, ignore_errors=True)
        progress(f"write: {len(results)} patients in {timings['total_s']:.1f} s", force=True)
        return summary
    except KeyboardInterrupt as exc:
        raise Interrupted("SIGINT") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _dask() -> Any:
    """The Dask engine's module, or one line saying how to install it."""
    try:
        from . import dask_engine
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("dask", "distributed", "pandas", "pyarrow"):
            raise ScreenError("--engine dask needs the dask extra: pip install 'ketamine-cds[dask]'") from exc
        raise
    return dask_engine


def _save(state_file: Path, state: dict[str, Any]) -> None:
    write_private(state_file, json.dumps(state).encode("utf-8"))


def _locally(opts: ScreenOptions, inventory: Inventory, data_files: Sequence[BulkFile], buckets: int,
             state: dict[str, Any], work: Path, results_dir: Path, progress: Callable[..., None],
             timings: dict[str, float]) -> list[Path]:
    """One process pool does both steps: its workers partition groups of files side by side (DuckDB, one thread
    each: reading a file is one thread's work anyway), then assess the buckets (kept for a resume)."""
    workers = max(1, opts.workers)
    initargs = (work, [f.path.name for f in data_files], opts.policy, opts.as_of, opts.pseudonymize_key)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker, initargs=initargs) as pool:
        t0 = time.monotonic()
        if not state.get("partitioned"):
            shutil.rmtree(work / "parts", ignore_errors=True)
            shutil.rmtree(work / "medications", ignore_errors=True)
            horizon = opts.policy.observation_horizon(opts.as_of)
            # Each of the workers' DuckDBs gets its share of the limit: together they stay under it.
            share = memory_share(opts.memory_limit, workers) if opts.memory_limit else None
            futures = [pool.submit(_run_partition, g, files, buckets, horizon, share)
                       for g, files in enumerate(_groups(data_files, 2 * workers))]
            found = _gather(futures)
            parted = Partitioned.merge([p for p, _ in found])
            timings["partition_cpu_s"] = round(sum(cpu for _, cpu in found), 3)
            state.update(partitioned=True, patients=parted.patients, types_seen=list(parted.types_seen),
                         counts={k: asdict(v) for k, v in parted.counts.items()})
            _save(work / "state.json", state)
        timings["partition_s"] = round(time.monotonic() - t0, 3)
        progress(f"partition: {sum(f.size for f in data_files) / 1e6:.1f} MB into {buckets} buckets", force=True)
        t0 = time.monotonic()
        gaps = _gaps(inventory, opts.allow_missing_types, state.get("types_seen", []))
        done = _assess(opts, pool, work, results_dir, gaps, progress, int(state.get("patients", 0)), timings)
        timings["assess_s"] = round(time.monotonic() - t0, 3)
    return done


def _on_dask(opts: ScreenOptions, inventory: Inventory, data_files: Sequence[BulkFile], buckets: int,
             state: dict[str, Any], results_dir: Path, progress: Callable[..., None],
             timings: dict[str, float]) -> list[Path]:
    """Read and key on the cluster, shuffle by patient, assess there; each bucket's result is written here as it
    comes back (what a resume skips: the keyed lines live in the cluster's memory, so a resume reads again)."""
    engine = _dask()
    result_files = [results_dir / f"bucket={i}.jsonl" for i in range(buckets)]
    todo = [i for i, r in enumerate(result_files) if not r.exists()]
    try:
        t0 = time.monotonic()
        with engine.open_cluster(opts.scheduler, opts.workers, opts.memory_limit, progress) as cluster:
            timings["cluster_s"] = round(time.monotonic() - t0, 3)
            t0 = time.monotonic()
            read = cluster.read(data_files, opts.policy.observation_horizon(opts.as_of))
            state.update(patients=read.patients, types_seen=list(read.types_seen),
                         counts={k: asdict(v) for k, v in read.counts.items()})
            timings["partition_s"] = round(time.monotonic() - t0, 3)
            progress(f"read: {sum(f.size for f in data_files) / 1e6:.1f} MB keyed on the cluster", force=True)
            t0 = time.monotonic()
            gaps = _gaps(inventory, opts.allow_missing_types, read.types_seen)
            finished, assessed = buckets - len(todo), 0
            if todo:
                for index, lines in cluster.assess(buckets, todo, [f.path.name for f in data_files], gaps,
                                                   opts.policy, opts.as_of, opts.pseudonymize_key):
                    write_private(result_files[index], lines)
                    finished += 1
                    assessed += lines.count(b"\n")
                    rate = assessed / max(time.monotonic() - t0, 1e-6)
                    eta = (read.patients - assessed) / rate if rate and read.patients > assessed else 0
                    progress(f"assess: {assessed} patients, {rate:.0f}/s, ETA {eta:.0f} s "
                             f"({finished}/{buckets} buckets)")
                    if opts.stop_after_buckets is not None and finished >= opts.stop_after_buckets:
                        raise Interrupted("stop_after_buckets")
            timings["assess_s"] = round(time.monotonic() - t0, 3)
    except engine.ClusterProblem as exc:
        raise ScreenError(str(exc)) from exc
    except (Interrupted, KeyboardInterrupt, ScreenError):
        raise
    except Exception as exc:  # a task failed on the cluster past Dask's retries: one line, never its message
        raise ScreenError(_worker_failed(exc)) from exc
    return result_files


def _groups(files: Sequence[BulkFile], count: int) -> list[list[tuple[int, BulkFile]]]:
    """The files (with their index in the export) in at most ``count`` groups of about equal weight, heaviest group
    first: each file, largest first, goes to the lightest group, a gzip file weighing the ~5x text it holds. More
    groups than workers, so that a misjudged weight is evened out by whichever worker is free first."""
    groups: list[list[tuple[int, BulkFile]]] = [[] for _ in range(max(1, min(count, len(files))))]
    weights = [0] * len(groups)
    for i, f in sorted(enumerate(files), key=lambda item: (-_weight(item[1]), item[0])):
        lightest = weights.index(min(weights))
        groups[lightest].append((i, f))
        weights[lightest] += _weight(f)
    heaviest_first = sorted(range(len(groups)), key=lambda g: -weights[g])
    return [sorted(groups[g], key=lambda item: item[0]) for g in heaviest_first if groups[g]]


def _weight(f: BulkFile) -> int:
    return f.size * 5 if f.gzipped else f.size


def _gather(futures: Sequence[concurrent.futures.Future[tuple[Partitioned, float]]]) -> list[tuple[Partitioned, float]]:
    try:
        return [f.result() for f in futures]
    except (Interrupted, KeyboardInterrupt):
        for f in futures:
            f.cancel()
        raise
    except Exception as exc:  # a worker died or failed: one line (its message may quote the chart)
        for f in futures:
            f.cancel()
        raise ScreenError(f"partitioning failed in a worker ({exc.__class__.__name__}); run the same command "
                          "again") from exc


def _assess(opts: ScreenOptions, pool: concurrent.futures.ProcessPoolExecutor, work: Path, results_dir: Path,
            gaps: list[DataGap], progress: Callable[..., None], patients: int,
            timings: dict[str, float]) -> list[Path]:
    todo = [(b, results_dir / f"bucket={b}.jsonl") for b in bucket_indices(work)]
    pending = [(b, r) for b, r in todo if not r.exists()]
    finished = len(todo) - len(pending)
    assessed, cpu = 0, 0.0
    started = time.monotonic()
    futures = {pool.submit(_run_bucket, b, r, gaps): r for b, r in pending}
    try:
        for future in concurrent.futures.as_completed(futures):
            count, seconds = future.result()
            assessed += count
            cpu += seconds
            timings["assess_cpu_s"] = round(cpu, 3)
            finished += 1
            rate = assessed / max(time.monotonic() - started, 1e-6)
            eta = (patients - assessed) / rate if rate and patients > assessed else 0
            progress(f"assess: {assessed} patients, {rate:.0f}/s, ETA {eta:.0f} s ({finished}/{len(todo)} buckets)")
            if opts.stop_after_buckets is not None and finished >= opts.stop_after_buckets:
                raise Interrupted("stop_after_buckets")
    except (Interrupted, KeyboardInterrupt):
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    except Exception as exc:  # a worker died or failed: say so in one line (its message may quote the chart)
        for f in futures:
            f.cancel()
        raise ScreenError(_worker_failed(exc)) from exc
    return [r for _, r in todo]


def _worker_failed(exc: Exception) -> str:
    return (f"assessment failed in a worker ({exc.__class__.__name__}); the buckets already done are kept in "
            "OUTDIR/_work: run the same command with --resume")


def _inputs(inventory: Inventory, counts: dict[str, dict[str, int]], seen: Sequence[str]) -> dict[str, Any]:
    by_type: dict[str, dict[str, int]] = {}
    for f in inventory.files:
        key = f.resource_type or f.kind.value
        entry = by_type.setdefault(key, {"files": 0, "bytes": 0, "lines": 0})
        entry["files"] += 1
        entry["bytes"] += f.size
        entry["lines"] += counts.get(str(f.path), {}).get("lines", 0)
    problems = {Path(path).name: {k: v for k, v in c.items() if k != "lines" and v}
                for path, c in counts.items() if any(v for k, v in c.items() if k != "lines")}
    return {"files": len(inventory.files), "by_type": by_type, "by_kind": _kinds(inventory),
            "missing_types": inventory.missing_types(seen), "error_types": sorted(inventory.errors),
            "problems": problems}


def _kinds(inventory: Inventory) -> dict[str, int]:
    found: dict[str, int] = {}
    for f in inventory.files:
        found[f.kind.value] = found.get(f.kind.value, 0) + 1
    return found

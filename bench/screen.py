"""Benchmark: ``ketamine-cds screen`` over a generated Bulk export, against json.loads and against assess_pool.

    uv run python bench/screen.py [--patients 2000 6000] [--engine local dask] [--noise 36] [--workers 2]
                                  [--memory-limit 256MB]

Builds an export of about N patients (the fixture patients cloned, with rule-neutral noise so a patient weighs tens
of KB, as an EHR's does), runs the real CLI in a subprocess, and prints: patients per second, the peak PSS of the
whole process tree (sampled from /proc every 0.1 s), the CPU seconds of that tree, the phase timings the run wrote
to summary.json (wall, and the workers' CPU seconds per phase), the run's time over json.loads of the same bytes, and
the per-patient time of the screen against a loop of ``assess_pool(pool, patient_id=...)`` over the whole export
(sampled on 20 patients). Goals (issue #16): >= 200 patients/s at 6,000 patients with peak PSS <= 800 MB at 256MB,
and >= 25x faster per patient than the loop at 2,000; ``--engine dask`` on a 2-worker LocalCluster >= 140
patients/s; throughput at 6,000 >= 0.9x throughput at 2,000. Each goal is printed with "met" or "NOT met".

Wall-clock figures need a quiet machine; on a shared one, compare the CPU seconds (per patient, per phase) instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eligibility import assess_pool, load_policy
from fhir_mapping import read_path
from fixtures.build_bulk import build, fixture_resources


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return found


def _pss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _json_loads_s(folder: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    size = 0
    for f in sorted(folder.glob("*.ndjson*")):
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        size += len(data)
        for line in data.splitlines():
            if line.strip():
                json.loads(line)
    return time.perf_counter() - t0, size


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _screen(bulk: Path, out: Path, engine: str, workers: int,
            memory_limit: str) -> tuple[int, float, float, float, dict[str, float]]:
    """(patients, wall seconds, peak PSS MB, CPU seconds of the process tree, the run's phase timings) of one real
    CLI run in a subprocess."""
    cpu = _children_cpu_s()  # the workers are waited for by the command, so their CPU counts in its own
    cmd = [sys.executable, "-m", "ketamine_cds.cli", "screen", "--bulk", str(bulk), "--out", str(out),
           "--as-of", "2026-11-01", "--workers", str(workers), "--memory-limit", memory_limit,
           "--progress", "none", "--engine", engine]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _pss_mb(_tree(proc.pid)))
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"screen failed: {stderr.decode()[-500:]}")
    timings = json.loads((out / "summary.json").read_text(encoding="utf-8"))["run"]["timings"]
    return int(json.loads(stdout)["patients"]), wall, peak, _children_cpu_s() - cpu, timings


_PHASES = (("scan_s", "scan"), ("cluster_s", "cluster start"), ("partition_s", "partition"),
           ("assess_s", "assess"), ("write_s", "write"), ("total_s", "total"))


def _phases(timings: dict[str, float]) -> str:
    wall = ", ".join(f"{name} {timings[key]:.1f} s" for key, name in _PHASES if key in timings)
    cpu = ", ".join(f"{name} {timings[key]:.1f} s" for key, name in (("partition_cpu_s", "partition"),
                                                                     ("assess_cpu_s", "assess")) if key in timings)
    return f"  phases (wall): {wall}" + (f"\n  workers' CPU: {cpu}" if cpu else "")


def _goal(text: str, met: bool) -> None:
    print(f"  goal {text}: {'met' if met else 'NOT met'}")


def run(patients: int, noise: int, engines: list[str], workers: int, memory_limit: str,
        sample: int) -> dict[str, float]:
    """Patients per second of each engine on one export of about ``patients`` patients."""
    clones = max(1, -(-patients // len(fixture_resources())))
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bulk = Path(tmp) / "bulk"
        build(bulk, clones=clones, noise_per_patient=noise)
        loads_s, size = _json_loads_s(bulk)
        for engine in engines:
            n, wall, peak, cpu, timings = _screen(bulk, Path(tmp) / f"out-{engine}", engine, workers, memory_limit)
            rates[engine] = n / wall
            print(f"patients {n}, {size / 1e6:.1f} MB ({size / n / 1e3:.0f} KB per patient), --engine {engine}, "
                  f"workers {workers}, --memory-limit {memory_limit}")
            print(f"  screen: {wall:.1f} s, {n / wall:.0f} patients/s, peak PSS of the process tree {peak:.0f} MB, "
                  f"CPU {cpu:.1f} s ({cpu / n * 1000:.2f} ms per patient)")
            print(_phases(timings))
            print(f"  json.loads of the same bytes: {loads_s:.2f} s; screen / json.loads = {wall / loads_s:.1f}x")
            if engine == "local" and patients >= 6000:
                _goal(">= 200 patients/s at 6,000", n / wall >= 200)
                _goal(f"peak PSS <= 800 MB at --memory-limit {memory_limit}", peak <= 800)
            if engine == "dask" and patients >= 6000:
                _goal(">= 140 patients/s on a 2-worker LocalCluster", n / wall >= 140)
            if sample and engine == engines[0]:
                _against_the_loop(bulk, sample, wall / n)
    return rates


def _against_the_loop(bulk: Path, sample: int, per_patient: float) -> None:
    pool = read_path(bulk)
    policy = load_policy("default")
    ids = sorted(r["id"] for r in pool.resources if r["resourceType"] == "Patient")[:sample]
    t0 = time.perf_counter()
    for pid in ids:
        assess_pool(pool, policy, dt.date(2026, 11, 1), pid)
    loop = (time.perf_counter() - t0) / len(ids)
    print(f"  assess_pool over the whole export: {loop * 1000:.1f} ms per patient; screen "
          f"{per_patient * 1000:.2f} ms per patient; {loop / per_patient:.0f}x faster per patient")
    _goal(">= 25x faster per patient than assess_pool over the whole export", loop / per_patient >= 25)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, nargs="+", default=[2000, 6000])
    parser.add_argument("--engine", nargs="+", choices=("local", "dask"), default=["local", "dask"])
    parser.add_argument("--noise", type=int, default=36,
                        help="noise resource sets per patient (5 resources each; 36: about 61 KB per patient)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="256MB")
    parser.add_argument("--sample", type=int, default=20, help="patients timed with assess_pool (0: skip)")
    args = parser.parse_args()
    by_size = [run(n, args.noise, args.engine, args.workers, args.memory_limit, args.sample if i == 0 else 0)
               for i, n in enumerate(args.patients)]
    if len(by_size) > 1:
        for engine in args.engine:
            ratio = by_size[-1][engine] / by_size[0][engine]
            print(f"linearity, --engine {engine}: throughput at {args.patients[-1]} / at {args.patients[0]} = "
                  f"{ratio:.2f}x")
            _goal(f"--engine {engine}: throughput at the last size >= 0.9x at the first", ratio >= 0.9)


if __name__ == "__main__":
    main()

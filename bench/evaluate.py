"""Benchmark: assess a heavy patient (>= 2,000 resources, ~1 MB) and compare with json.loads of the same bytes.

    uv run python bench/evaluate.py [--runs 15]

Prints the median of several runs for json.loads alone, for the whole assessment (parse, per-entry R4B validation,
mapping, rules), and their ratio (goal: <= 5x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.heavy_patient import AS_OF, heavy_bytes
from eligibility import assess_pool, load_policy
from fhir_mapping import ResourcePool, add_json, clear_validation_cache


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--resources", type=int, default=2500)
    args = parser.parse_args()
    policy = load_policy("default")
    cases = [("8 years of chart", heavy_bytes(args.resources, 3000)),
             ("worst case: whole chart inside the rules' 2-year horizon", heavy_bytes(args.resources, 700))]
    print(f"median of {args.runs} runs, as of {AS_OF.isoformat()}, run on {dt.date.today().isoformat()}")
    for label, raw in cases:

        def evaluate(raw: bytes = raw) -> object:
            clear_validation_cache()  # cold: no resource of this chart validated before
            pool = ResourcePool()
            add_json(pool, json.loads(raw), "heavy")
            return assess_pool(pool, policy, AS_OF)

        evaluate()  # warm caches (code sets, policy, model classes), as a running service has them
        entries = len(json.loads(raw)["entry"])
        loads = median_ms(lambda raw=raw: json.loads(raw), args.runs)
        full = median_ms(evaluate, args.runs)
        print(f"heavy patient, {label}: {entries} resources, {len(raw) / 1e6:.2f} MB")
        print(f"  json.loads           {loads:8.1f} ms")
        print(f"  evaluate (all steps) {full:8.1f} ms")
        print(f"  ratio                {full / loads:8.1f}x  (goal <= 5x)")


if __name__ == "__main__":
    main()

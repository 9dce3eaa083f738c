"""Fuzz: thousands of generated hostile requests per endpoint against the whole app, in-process; prints the 5xx
count per endpoint (goal: 0) and the status codes seen.

    ./dev run-python bench/fuzz.py [--per-endpoint 2000] [--only session] [--postgresql]

``--only`` keeps the endpoints whose path contains the word; ``--postgresql`` keeps the shared state in a throwaway
PostgreSQL cluster (tests/postgres.py) instead of the embedded SQLite file.

The requests come from the same hypothesis strategies as ``tests/test_fuzz.py`` (``tests/hostile.py``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile import (
    CDS_ENDPOINTS,
    SMART_ENDPOINTS,
    HostileRequest,
    Target,
    hostile_cds_request,
    hostile_smart_request,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-endpoint", type=int, default=2000)
    parser.add_argument("--only", default="", help="only the endpoints whose path contains this")
    parser.add_argument("--postgresql", action="store_true", help="shared state in a throwaway PostgreSQL")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        database_url = None
        if args.postgresql:
            from tests.postgres import throwaway_cluster

            database_url = stack.enter_context(throwaway_cluster()).create_database("fuzz")
        return _fuzz(args, database_url)


def _fuzz(args: argparse.Namespace, database_url: str | None) -> int:
    total_5xx = total = 0
    with tempfile.TemporaryDirectory() as work:
        target = Target(Path(work), database_url)
        try:
            print(f"{'endpoint':<45} {'requests':>8} {'5xx':>5}  status codes "
                  f"({'PostgreSQL' if database_url else 'SQLite'})")
            for path in (p for p in (*CDS_ENDPOINTS, *SMART_ENDPOINTS) if args.only in p):
                strategy = hostile_cds_request(path) if path.startswith("/cds") else hostile_smart_request(path)
                statuses: collections.Counter[int] = collections.Counter()
                failures: list[HostileRequest] = []

                @settings(max_examples=args.per_endpoint, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(strategy)
                def run(req: HostileRequest) -> None:
                    response = target.send(req)
                    statuses[response.status_code] += 1  # noqa: B023 - run() is called within this iteration
                    if response.status_code >= 500:
                        failures.append(req)  # noqa: B023

                started = time.perf_counter()
                run()
                count = sum(statuses.values())
                errors = sum(n for code, n in statuses.items() if code >= 500)
                total_5xx += errors
                total += count
                codes = ", ".join(f"{code}x{n}" for code, n in sorted(statuses.items()))
                print(f"{path:<45} {count:>8} {errors:>5}  {codes}  ({time.perf_counter() - started:.0f} s)")
                for req in failures[:3]:
                    print(f"    5xx: {req.method} {req.path} {req.content_type} {req.body[:120]!r}")
        finally:
            target.close()
    print(f"total requests: {total}, total 5xx: {total_5xx}")
    return 1 if total_5xx else 0


if __name__ == "__main__":
    raise SystemExit(main())

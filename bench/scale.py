"""Scale-out: order-sign throughput and latency by topology, and what the shared-state database costs.

    ./dev run-python bench/scale.py [--seconds 10]

(1) in-process order-sign (fixture 01, full prefetch, a fresh JWT each): request time and the time spent in the
    store (replay check, issued cards) on the embedded SQLite file and on PostgreSQL, p50 of each and the database's
    share (goal: PostgreSQL adds <= 2 ms to the p50);
(2) over HTTP on 127.0.0.1: 1 client, then 4 and 16 concurrent clients, for 1 replica x 1 worker (SQLite),
    1 x 1, 1 x 2 and 2 replicas x 1 worker (PostgreSQL): requests/s, p50, p95, errors. Every replica is
    ``ketamine-cds serve`` in its own process; PostgreSQL is a throwaway cluster on loopback. On a 2-core machine the
    load generator shares the cores with the servers: throughput stops growing when the cores are full.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cds_latency import SIGN, free_port, pct, post_signs  # noqa: E402
from ketamine_cds.app import create_app  # noqa: E402
from ketamine_cds.settings import load_settings  # noqa: E402
from storage import Storage  # noqa: E402
from tests.cds_hooks.conftest import ISSUER, Keys, hook_request  # noqa: E402
from tests.postgres import throwaway_cluster  # noqa: E402

TODAY = dt.date(2026, 11, 1)


def write_config(work: Path, base: str, keys: Keys, database: str | None, workers: int = 1) -> Path:
    (work / "jwks.json").write_text(json.dumps(keys.jwks()))
    storage = ""
    if database:
        (work / "database-url").write_text(database)
        key = work / "storage.key"
        if not key.exists():
            subprocess.run([str(Path(sys.executable).with_name("ketamine-cds")), "generate-key", str(key)],
                           check=True, capture_output=True)
        storage = '[storage]\ndatabase_url_file = "database-url"\nencryption_key_file = "storage.key"\n'
    path = work / "ketamine-cds.toml"
    path.write_text(f'[cds]\npublic_base_url = "{base}"\nfeedback_db = "state.sqlite3"\n'
                    f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_file = "jwks.json"\n{storage}'
                    f"[server]\nworkers = {workers}\n")
    return path


async def in_process(keys: Keys, database: str | None, runs: int) -> tuple[float, float]:
    """(p50 request ms, p50 ms inside the store) for order-sign in-process."""
    with tempfile.TemporaryDirectory() as tmp:
        base = "http://cds.bench"
        config = write_config(Path(tmp), base, keys, database)
        if database:  # before the clock starts: the schema, as an operator would create it
            subprocess.run([str(Path(sys.executable).with_name("ketamine-cds")), "migrate",  # noqa: ASYNC221
                            "--config", str(config)], check=True, capture_output=True)
        app = create_app(load_settings(config), today=lambda: TODAY, configure_logging=False)
        store: Storage = app.state.storage
        spent: list[float] = []
        original = store._run

        async def timed(work: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(work)
            finally:
                spent.append((time.perf_counter() - t0) * 1000)

        store._run = timed  # type: ignore[method-assign]
        raw = json.dumps(hook_request("01")).encode()
        totals, in_store = [], []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as cds:
            for i in range(runs + 20):
                token = keys.token(base + SIGN)
                spent.clear()
                t0 = time.perf_counter()
                r = await cds.post(SIGN, content=raw, headers={"Content-Type": "application/json",
                                                               "Authorization": f"Bearer {token}"})
                elapsed = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200 and r.json()["cards"], r.text
                if i >= 20:  # warm-up: connections, caches
                    totals.append(elapsed)
                    in_store.append(sum(spent))
        await app.state.options.http.aclose()
        await store.aclose()
        return statistics.median(totals), statistics.median(in_store)


@contextlib.contextmanager
def replicas(keys: Keys, database: str | None, count: int, workers: int) -> Iterator[list[str]]:
    """``count`` serve processes with ``workers`` workers each, one configuration; their base URLs (the first is
    the public URL, the JWT audience)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ports = [free_port() for _ in range(count)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        config = write_config(work, bases[0], keys, database, workers)
        exe = str(Path(sys.executable).with_name("ketamine-cds"))
        if database:
            subprocess.run([exe, "migrate", "--config", str(config)], check=True, capture_output=True)
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        procs = [subprocess.Popen([exe, "serve", "--config", str(config), "--port", str(p)], cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
        try:
            for base in bases:
                deadline = time.monotonic() + 60
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{base} did not become ready")
                    time.sleep(0.2)
            yield bases
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)


async def drive(keys: Keys, bases: list[str], clients: int, seconds: float) -> tuple[float, float, float, int]:
    """``clients`` spread over the replicas for ``seconds``: (req/s, p50, p95, errors)."""
    audience = bases[0] + SIGN
    per = [clients // len(bases) + (1 if i < clients % len(bases) else 0) for i in range(len(bases))]
    token_sets = [[keys.token(audience) for _ in range(int(seconds * 500 / len(bases)) + 50)] for _ in bases]
    deadline = time.perf_counter() + seconds
    results = await asyncio.gather(*[post_signs(b, t, n, deadline) for b, t, n in zip(bases, token_sets, per,
                                                                                       strict=True) if n])
    times = [t for r in results for t in r[0]]
    errors = sum(r[1] for r in results)
    wall = max(r[2] for r in results)
    return len(times) / wall, pct(times, 50), pct(times, 95), errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    keys = Keys()
    print(f"ketamine-cds scale-out, {os.cpu_count()} cores, {dt.date.today().isoformat()}")
    with throwaway_cluster() as cluster:
        print("(1) in-process order-sign: the store's share")
        sqlite_total, sqlite_store = asyncio.run(in_process(keys, None, args.runs))
        pg_total, pg_store = asyncio.run(in_process(keys, cluster.create_database("bench_inproc"), args.runs))
        print(f"  SQLite:     p50 {sqlite_total:.2f} ms per request, {sqlite_store:.2f} ms in the store "
              f"({100 * sqlite_store / sqlite_total:.0f} %)")
        print(f"  PostgreSQL: p50 {pg_total:.2f} ms per request, {pg_store:.2f} ms in the store "
              f"({100 * pg_store / pg_total:.0f} %)")
        print(f"  PostgreSQL adds {pg_total - sqlite_total:+.2f} ms to the p50 (goal <= 2 ms)")
        print("(2) over HTTP: requests/s, p50, p95, errors")
        topologies = [("1 replica x 1 worker, SQLite", None, 1, 1),
                      ("1 replica x 1 worker, PostgreSQL", "bench_1x1", 1, 1),
                      ("1 replica x 2 workers, PostgreSQL", "bench_1x2", 1, 2),
                      ("2 replicas x 1 worker, PostgreSQL", "bench_2x1", 2, 1)]
        for name, db, count, workers in topologies:
            database = cluster.create_database(db) if db else None
            with replicas(keys, database, count, workers) as bases:
                line = []
                for clients in (1, 4, 16):
                    rate, p50, p95, errors = asyncio.run(drive(keys, bases, clients, args.seconds))
                    line.append(f"{clients:>2} clients {rate:5.0f} req/s p50 {p50:5.1f} p95 {p95:5.1f} ms"
                                + (f" ERRORS {errors}" if errors else ""))
                print(f"  {name:<36} " + " | ".join(line))


if __name__ == "__main__":
    main()

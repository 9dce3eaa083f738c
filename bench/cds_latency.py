"""Benchmark the CDS Hooks service.

    uv run python bench/cds_latency.py [--requests 2000]

(1) in-process order-sign with full prefetch (typical and heavy patient): median and p95, and the ratio to
    json.loads of the same request body (goal <= 5x);
(2) over HTTP with uvicorn on 127.0.0.1, 4 concurrent clients: p50/p95/p99 and errors (goal p95 <= 100 ms, 0 errors);
(3) no prefetch, all data from a SEKMET server on 127.0.0.1: total time vs the slowest single query (goal <= 1.5x);
(4) sustained load: 16 concurrent clients for 60 s over HTTP: errors, p50/p95/p99, the server's RSS before/after.
Every request carries a fresh signed JWT (made before timing starts), so JWT verification is included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
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

from bench.heavy_patient import heavy_bundle  # noqa: E402
from fhir_mapping import SEARCHES, clear_validation_cache  # noqa: E402
from ketamine_cds.app import create_app  # noqa: E402
from ketamine_cds.settings import load_settings  # noqa: E402
from tests.cds_hooks.conftest import (  # noqa: E402
    Keys,
    draft_order,
    hook_request,
    searchset,
)
from tests.conftest import as_transaction, load_bundle  # noqa: E402

TODAY = dt.date(2026, 11, 1)
SIGN = "/cds-services/ketamine-order-sign"
JSON = {"Content-Type": "application/json"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(work: Path, base: str, keys: Keys) -> Path:
    (work / "jwks.json").write_text(json.dumps(keys.jwks()))
    path = work / "ketamine-cds.toml"
    path.write_text(f'[cds]\npublic_base_url = "{base}"\nfeedback_db = "fb.sqlite3"\naudit_log = "audit.jsonl"\n'
                    f'[[cds.clients]]\nissuer = "https://ehr.test"\njwks_file = "jwks.json"\n'
                    'fhir_server_networks = ["127.0.0.0/8"]\n')  # the no-prefetch run's SEKMET is on loopback
    return path


def heavy_request() -> dict[str, Any]:
    resources = [e["resource"] for e in heavy_bundle()["entry"]]
    pid = resources[0]["id"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    prefetch: dict[str, Any] = {}
    for search in SEARCHES:  # what each template of the search table returns for this patient
        if not search.is_search:
            prefetch[search.key] = resources[0]
            continue
        found = by_type.get(search.resource_type.value, [])
        codes = dict(search.params).get("code")
        if codes:
            wanted = set(codes.split(","))
            found = [o for o in found if f"{o['code']['coding'][0].get('system')}|{o['code']['coding'][0]['code']}"
                     in wanted]
        prefetch[search.key] = searchset(found)
    body = hook_request("01", prefetch=prefetch, orders=[draft_order(pid)])
    body["context"]["patientId"] = pid
    return body


async def in_process(keys: Keys, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = "http://cds.bench"
        app = create_app(load_settings(config(Path(tmp), base, keys)), today=lambda: TODAY, configure_logging=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
            for label, body in (("typical patient (fixture 01)", hook_request("01")),
                                ("heavy patient (2,500 resources)", heavy_request())):
                raw = json.dumps(body).encode()
                tokens = [keys.token(base + SIGN) for _ in range(runs + 3)]
                for token in tokens[:3]:  # warm-up: imports, code sets, policy, model classes
                    await client.post(SIGN, content=raw, headers=JSON | {"Authorization": f"Bearer {token}"})
                loads = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    json.loads(raw)
                    loads.append((time.perf_counter() - t0) * 1000)
                lmed = statistics.median(loads)
                print(f"  {label}: request body {len(raw) / 1e3:.0f} kB, json.loads median {lmed:.2f} ms")
                for mode in ("cold", "warm"):
                    times = []
                    for token in tokens[3:]:
                        if mode == "cold":  # no resource of this patient validated before: a first call
                            clear_validation_cache()
                        t0 = time.perf_counter()
                        r = await client.post(SIGN, content=raw, headers=JSON | {"Authorization": f"Bearer {token}"})
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, r.text
                    tokens = [keys.token(base + SIGN) for _ in range(runs + 3)]
                    med = statistics.median(times)
                    what = "first call for the patient" if mode == "cold" else "repeat hook, e.g. select then sign"
                    print(f"    {mode} ({what}): median {med:.1f} ms, p95 {pct(times, 95):.1f} ms, "
                          f"ratio to json.loads {med / lmed:.1f}x (goal <= 5x)")
        app.state.storage.close()


def start(cmd: list[str], url: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not start")


@contextlib.contextmanager
def serving_cds(keys: Keys) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``ketamine-cds serve`` in its own process on 127.0.0.1: (base URL, process)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        exe = str(Path(sys.executable).with_name("ketamine-cds"))
        proc = start([exe, "serve", "--config", str(config(Path(tmp), base, keys)), "--port", str(port)],
                     base + "/cds-services", Path(tmp))
        try:
            yield base, proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def post_signs(base: str, tokens: list[str], concurrency: int, deadline: float = float("inf")) -> tuple[
        list[float], int, float]:
    """``concurrency`` clients post order-sign (fixture 01), one pre-made token each, until the tokens or the
    deadline run out: (latencies in ms, errors, wall time in s)."""
    raw = json.dumps(hook_request("01")).encode()
    times: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            while tokens and time.perf_counter() < deadline:
                token = tokens.pop()
                t0 = time.perf_counter()
                try:
                    r = await client.post(SIGN, content=raw, headers=JSON | {"Authorization": f"Bearer {token}"})
                    ok = r.status_code == 200 and r.json()["cards"]
                except httpx.HTTPError:
                    ok = False
                times.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return times, errors, time.perf_counter() - started


async def over_http(keys: Keys, total: int, concurrency: int = 4) -> None:
    with serving_cds(keys) as (base, _):
        times, errors, wall = await post_signs(base, [keys.token(base + SIGN) for _ in range(total)], concurrency)
        print(f"  {total} requests, {concurrency} concurrent clients, {total / wall:.0f} req/s: "
              f"p50 {pct(times, 50):.1f} ms, p95 {pct(times, 95):.1f} ms, p99 {pct(times, 99):.1f} ms, "
              f"errors {errors} (goal p95 <= 100 ms, 0 errors)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(keys: Keys, seconds: float, concurrency: int = 16) -> None:
    """Sustained load: ``concurrency`` clients for ``seconds`` over HTTP; errors, percentiles, the server's RSS."""
    with serving_cds(keys) as (base, proc):
        # Tokens are made before the clock starts (signing is the client's work, not the service's).
        tokens = [keys.token(base + SIGN) for _ in range(int(seconds * 450))]
        rss_before = rss_mb(proc.pid)
        times, errors, wall = await post_signs(base, tokens, concurrency, time.perf_counter() + seconds)
        print(f"  {concurrency} concurrent clients for {wall:.0f} s: {len(times)} requests, "
              f"{len(times) / wall:.0f} req/s, errors {errors}; p50 {pct(times, 50):.1f} ms, "
              f"p95 {pct(times, 95):.1f} ms, p99 {pct(times, 99):.1f} ms; server RSS {rss_before:.0f} MB before, "
              f"{rss_mb(proc.pid):.0f} MB after" + ("" if tokens else " (ran out of pre-made tokens)"))


async def no_prefetch(keys: Keys, runs: int) -> None:
    from cds_hooks.prefetch import PREFETCH_KEYS

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        fhir = f"http://127.0.0.1:{port}/fhir"
        (work / "settings.yaml").write_text(json.dumps({
            "base_url": fhir, "host": "127.0.0.1", "port": port, "data_dir": str(work / "data"),
            "own_private_key_path": str(work / "k.pem"), "simulator": {"enabled": False, "auto": []},
            "validation": {"inbound": "warn"}, "log_inbound": False}))
        exe = str(Path(sys.executable).with_name("sekmet"))
        proc = start([exe, "serve", "--config", str(work / "settings.yaml")], fhir + "/metadata", work)
        try:
            async with httpx.AsyncClient(timeout=30) as loader:
                (await loader.post(fhir, json=as_transaction(load_bundle("01")))).raise_for_status()
            base = "http://cds.bench"
            app = create_app(load_settings(config(work, base, keys)), today=lambda: TODAY, configure_logging=False)
            body = hook_request("01", prefetch={}, fhirServer=fhir,
                                fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 60,
                                                   "scope": "patient/*.read", "subject": "bench"})
            raw = json.dumps(body).encode()
            totals, slowest, summed = [], [], []
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as cds, \
                    httpx.AsyncClient(timeout=10) as fhir_client:
                for i in range(runs + 2):
                    t0 = time.perf_counter()
                    r = await cds.post(SIGN, content=raw,
                                       headers=JSON | {"Authorization": f"Bearer {keys.token(base + SIGN)}"})
                    total = (time.perf_counter() - t0) * 1000
                    assert r.status_code == 200 and r.json()["cards"], r.text
                    singles = []
                    for key in PREFETCH_KEYS:
                        q = key.query("kc-01")
                        t1 = time.perf_counter()
                        (await fhir_client.get(f"{fhir}/{q.path}", params=q.params)).raise_for_status()
                        singles.append((time.perf_counter() - t1) * 1000)
                    if i >= 2:
                        totals.append(total)
                        slowest.append(max(singles))
                        summed.append(sum(singles))
            med, smed = statistics.median(totals), statistics.median(slowest)
            print(f"  {len(PREFETCH_KEYS)} prefetch keys missing (sent as {len(PREFETCH_KEYS) - 4} searches): "
                  f"service total median {med:.1f} ms; "
                  f"slowest single query median {smed:.1f} ms, ratio {med / smed:.2f}x (goal <= 1.5x); the "
                  f"{len(PREFETCH_KEYS)} "
                  f"queries one after another: {statistics.median(summed):.1f} ms")
            app.state.storage.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=60)
    args = parser.parse_args()
    keys = Keys()
    print(f"ketamine-cds CDS Hooks latency, {os.cpu_count()} cores, {dt.date.today().isoformat()}")
    print("(1) in-process order-sign, full prefetch")
    asyncio.run(in_process(keys, args.runs))
    print("(2) over HTTP (uvicorn on 127.0.0.1)")
    asyncio.run(over_http(keys, args.requests))
    print("(3) no prefetch: every query to SEKMET on 127.0.0.1, concurrently")
    asyncio.run(no_prefetch(keys, max(10, args.runs // 5)))
    print("(4) sustained load over HTTP")
    asyncio.run(load(keys, args.load_seconds))


if __name__ == "__main__":
    main()

"""Shared fixtures: the synthetic patients, and a real SEKMET FHIR server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_mapping.outbound import tls_context

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = ROOT / "fixtures" / "patients"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fixture_bundles() -> list[Path]:
    return sorted(p for p in PATIENTS.glob("*.json") if not p.name.endswith(".expected.json"))


def server_comparable_bundles() -> list[Path]:
    """The fixtures a FHIR server (or a prefetch built from their resources) can answer as the file does: all but a
    searchset carrying its own OperationOutcome entry (search.mode "outcome", issue #20). That outcome is the
    file's alone; a server searching the same resources answers completely. ``tests/cds_hooks/
    test_published_shapes_cards.py`` gives the cards such an outcome in a prefetch, and the demo's sandbox serves it
    again with that patient's searches (``ehr_sandbox/search_outcomes.py``, tests/ketamine_cds/test_demo_dates.py)."""
    def has_outcome(path: Path) -> bool:
        return any((e.get("search") or {}).get("mode") == "outcome" for e in json.loads(path.read_text())["entry"])
    return [p for p in fixture_bundles() if not has_outcome(p)]


def load_bundle(name: str) -> dict[str, Any]:
    path = next(p for p in fixture_bundles() if p.stem.startswith(name))
    return json.loads(path.read_text())


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same resources as a transaction of PUTs, to load a server with fixed ids."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": e["resource"],
             "request": {"method": "PUT", "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}}
            for e in bundle["entry"]
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail at once if the process has exited."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1, verify=tls_context()) as http:
        while True:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up (exit code {proc.poll()})")
            time.sleep(0.1)


class Sekmet:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def load(self, bundle: dict[str, Any]) -> None:
        r = httpx.post(self.base_url, json=as_transaction(bundle), timeout=30, verify=tls_context(),
                       headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.text[:500]


@pytest.fixture(scope="session")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    """A real SEKMET FHIR R4 server on 127.0.0.1, loaded with every fixture patient."""
    work = tmp_path_factory.mktemp("sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    (work / "settings.yaml").write_text(json.dumps({
        "base_url": base, "host": "127.0.0.1", "port": port, "data_dir": str(work / "data"),
        "own_private_key_path": str(work / "keys" / "sekmet.pem"),
        "simulator": {"enabled": False, "auto": []}, "validation": {"inbound": "warn"},
        "log_inbound": False,
    }))
    exe = Path(sys.executable).with_name("sekmet")
    log = (work / "sekmet.log").open("w")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(work / "settings.yaml")], cwd=work,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        try:
            wait_until_up(f"{base}/metadata", proc, timeout_s=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: " + (work / "sekmet.log").read_text()[-2000:]) from exc
        server = Sekmet(base)
        for path in fixture_bundles():
            server.load(json.loads(path.read_text()))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server (the distribution's package) on loopback, for this test session."""
    from .postgres import throwaway_cluster

    with throwaway_cluster() as cluster:
        yield cluster

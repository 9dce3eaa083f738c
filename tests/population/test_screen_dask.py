"""``screen --engine dask``: the same steps on a real Dask cluster (2 worker processes on 127.0.0.1), the same output
byte for byte as ``--engine local``, and still the same when a worker dies in the middle of the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from population import Interrupted, ScreenError, dask_engine

from .test_screen import outputs, screen


def _comparable(out: Path) -> dict[str, Any]:
    found = outputs(out)
    del found["summary"]["run"]["engine"]
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **dask_engine.LOOPBACK) as found:
        yield found


@pytest.fixture(scope="module")
def reference(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    screen(export, out, buckets=5)
    return out


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.build_bulk import build

    folder = tmp_path_factory.mktemp("bulk")
    build(folder, clones=2)
    return folder


def _cli(export: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "ketamine_cds.cli", "screen", "--bulk", str(export), "--out", str(out),
           "--as-of", "2026-11-01", "--engine", "dask", "--buckets", "5", "--progress", "lines", *extra]
    return subprocess.run(cmd, capture_output=True, timeout=300)


def test_the_cli_on_a_cluster_gives_the_local_engines_output_byte_for_byte(
        export: Path, reference: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _cli(export, out, "--scheduler", cluster.scheduler_address)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _comparable(out) == _comparable(reference)
    for name in ("worklist.csv", "current-course-contraindicated.csv", "report.html"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert json.loads((out / "summary.json").read_text())["run"]["engine"] == "dask"
    assert not (out / "_work").exists()
    assert b"kc-" not in done.stderr  # counts only


class _KillAfterFirstBucket(SchedulerPlugin):  # type: ignore[misc]
    """Kills (SIGKILL) the worker that finished the first bucket's assessment while the others are still to do."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.killed: list[str] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        name = key[0] if isinstance(key, tuple) else str(key)
        if not self.killed and finish == "memory" and "assess_partition" in str(name):
            worker = kwargs.get("worker")
            if worker in self.pids:
                self.killed.append(worker)
                os.kill(self.pids[worker], signal.SIGKILL)


def test_a_worker_killed_after_the_first_bucket_and_the_run_still_finishes_identically(
        export: Path, reference: Path, tmp_path: Path) -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **dask_engine.LOOPBACK) as cluster, \
            Client(cluster) as client:
        plugin = _KillAfterFirstBucket(client.run(os.getpid))
        cluster.scheduler.add_plugin(plugin, name="kill-after-first-bucket")
        out = tmp_path / "out"
        done = _cli(export, out, "--scheduler", cluster.scheduler_address)
    assert plugin.killed, "no worker was killed: the test did not test anything"
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _comparable(out) == _comparable(reference)


def test_without_a_scheduler_a_local_cluster_on_loopback_runs_it(export: Path, reference: Path,
                                                                  tmp_path: Path) -> None:
    screen(export, tmp_path / "out", buckets=5, engine="dask")
    assert _comparable(tmp_path / "out") == _comparable(reference)


def test_resume_on_the_cluster_skips_finished_buckets_and_gives_the_same_output(
        export: Path, reference: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        screen(export, out, buckets=5, engine="dask", scheduler=cluster.scheduler_address, stop_after_buckets=2)
    assert len(list((out / "_work" / "results").glob("*.jsonl"))) == 2
    screen(export, out, buckets=5, engine="dask", scheduler=cluster.scheduler_address, resume=True)
    assert _comparable(out) == _comparable(reference)
    assert not (out / "_work").exists()


def test_resume_on_the_cluster_refuses_the_state_of_an_interrupted_local_run(
        export: Path, cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        screen(export, out, buckets=5, stop_after_buckets=1)
    with pytest.raises(ScreenError, match="changed since the interrupted run"):
        screen(export, out, buckets=5, engine="dask", scheduler=cluster.scheduler_address, resume=True)


def test_workers_running_other_rule_code_are_refused(export: Path, cluster: LocalCluster, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = dask_engine.code_fingerprint()
    monkeypatch.setattr(dask_engine, "code_fingerprint", lambda: {**real, "eligibility/assess.py": "0" * 64})
    with pytest.raises(ScreenError, match=r"2 of 2 Dask workers run different rule code .*\(eligibility/assess.py "
                                          r"differ\)"):
        screen(export, tmp_path / "out", engine="dask", scheduler=cluster.scheduler_address)
    assert not (tmp_path / "out" / "worklist.csv").exists()


@pytest.mark.parametrize(("address", "message"), [
    ("tcp://10.20.30.40:8786", "must be tls://"),
    ("tcp://scheduler.example.org:8786", "must be tls://"),
    ("http://127.0.0.1:8786", "give tcp://HOST:PORT"),
    ("tcp://127.0.0.1", "give tcp://HOST:PORT"),
])
def test_an_insecure_or_malformed_scheduler_is_refused_before_anything_is_read(
        export: Path, tmp_path: Path, address: str, message: str) -> None:
    with pytest.raises(ScreenError, match=message):
        screen(export, tmp_path / "out", engine="dask", scheduler=address)
    assert not (tmp_path / "out").exists()


def test_a_scheduler_that_does_not_answer_is_one_line(export: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(ScreenError, match="cannot reach the scheduler"):
        screen(export, tmp_path / "out", engine="dask", scheduler=f"tcp://127.0.0.1:{port}")


def test_without_the_dask_extra_the_cli_says_how_to_install_it(export: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['distributed'] = None; from ketamine_cds.cli import main; "
            f"sys.exit(main(['screen', '--bulk', {str(export)!r}, '--out', {str(tmp_path / 'out')!r}, "
            "'--engine', 'dask', '--progress', 'none']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "pip install 'ketamine-cds[dask]'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

"""Two `ketamine-cds serve` replicas on loopback sharing one PostgreSQL (a throwaway cluster from the distribution's
server package): any request may land on either replica. The SMART launch uses the sandbox EHR as its authorization
and FHIR server, served on its own port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from ehr_sandbox import Sandbox, SandboxClient, SandboxConfig
from ketamine_cds.demo import FIXTURES

from ..cds_hooks.conftest import ISSUER, Keys, hook_request
from ..conftest import free_port, wait_until_up
from ..postgres import Cluster, throwaway_cluster
from ..stack import serving, submit_authorize_form, text_of

pytestmark = pytest.mark.integration


@dataclass
class Replicas:
    a: str
    b: str
    public: str
    cluster: Cluster
    database: str
    sandbox: str
    keys: Keys
    procs: list[subprocess.Popen[bytes]]


def _serve(config: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("ketamine-cds")
    return subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ})


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    work = tmp_path_factory.mktemp("replicas")
    keys = Keys()
    (work / "jwks.json").write_text(json.dumps(keys.jwks()))
    port_a, port_b, port_s = free_port(), free_port(), free_port()
    a, b, s = (f"http://127.0.0.1:{p}" for p in (port_a, port_b, port_s))
    sandbox = Sandbox(SandboxConfig(
        public_base_url=s, data_dir=work / "sandbox", fixtures=FIXTURES, app_launch_url=f"{a}/smart/launch",
        app_clients=[SandboxClient("ketamine-cds", [f"{b}/smart/callback"], "none")]))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sandbox.load_fixtures()
        yield

    ehr = FastAPI(lifespan=lifespan)
    ehr.mount("/sandbox", sandbox.app)
    with throwaway_cluster() as cluster, serving(ehr, port_s):
        database = cluster.create_database("ketamine_cds")
        config = work / "ketamine-cds.toml"
        # Both replicas: one configuration. The public URL (the JWT audience, the SMART redirect) is replica B's;
        # the load balancer in front would be that address.
        config.write_text(f"""
[cds]
public_base_url = "{b}"
audit_log = "audit.jsonl"
[[cds.clients]]
issuer = "{ISSUER}"
jwks_file = "jwks.json"
[smart]
client_id = "ketamine-cds"
allowed_issuers = ["{s}/sandbox/fhir"]
redirect_uri = "{b}/smart/callback"
[storage]
database_url_file = "database-url"
encryption_key_file = "storage.key"
timeout_s = 2
""")
        (work / "database-url").write_text(database)
        exe = Path(sys.executable).with_name("ketamine-cds")
        assert subprocess.run([str(exe), "generate-key", str(work / "storage.key")], check=False).returncode == 0
        # Before the schema exists, serve refuses to start, and says what to do.
        refused = subprocess.run([str(exe), "serve", "--config", str(config), "--port", str(free_port())],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2 and "ketamine-cds migrate" in refused.stderr
        migrated = subprocess.run([str(exe), "migrate", "--config", str(config)], capture_output=True, text=True,
                                  timeout=60, check=False)
        assert migrated.returncode == 0 and "upgraded from revision none" in migrated.stdout, migrated.stderr
        logs = [(work / "a.log").open("wb"), (work / "b.log").open("wb")]
        procs = [_serve(config, port_a, logs[0]), _serve(config, port_b, logs[1])]
        try:
            for base, proc in zip((a, b), procs, strict=True):
                wait_until_up(f"{base}/readyz", proc, timeout_s=60)
            yield Replicas(a, b, b, cluster, database, s, keys, procs)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for log_file in logs:
                log_file.close()
            for name in ("a.log", "b.log"):
                log = (work / name).read_text(errors="replace")
                assert "Traceback" not in log, log[-3000:]
                assert "eyJ" not in log  # no token in any log line


def _call(base: str, r: Replicas, body: Any, path: str = "/cds-services/ketamine-order-sign",
          token: str | None = None) -> httpx.Response:
    token = token or r.keys.token(r.public + path)  # the audience is the public URL, whichever replica answers
    return httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_jwt_replayed_to_the_other_replica_is_refused(replicas: Replicas) -> None:
    token = replicas.keys.token(replicas.public + "/cds-services/ketamine-order-sign")
    body = hook_request("10")
    assert _call(replicas.a, replicas, body, token=token).status_code == 200
    assert _call(replicas.b, replicas, body, token=token).status_code == 401
    assert _call(replicas.a, replicas, body, token=token).status_code == 401


def test_feedback_sent_to_both_replicas_is_stored_once(replicas: Replicas) -> None:
    card = _call(replicas.a, replicas, hook_request("10")).json()["cards"][0]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-01T10:00:00Z",
            "overrideReason": {"reason": card["overrideReasons"][0]}}
    path = "/cds-services/ketamine-order-sign/feedback"
    for base in (replicas.a, replicas.b, replicas.b):
        assert _call(base, replicas, {"feedback": [item]}, path=path).status_code == 200
    with psycopg.connect(replicas.database) as conn:
        count = conn.execute("SELECT COUNT(*) FROM feedback WHERE card_uuid = %s", (card["uuid"],)).fetchone()
    assert count == (1,)


def test_a_smart_launch_started_on_one_replica_completes_on_the_other(replicas: Replicas) -> None:
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        chart = browser.post(f"{replicas.sandbox}/sandbox/launch", data={"patient": "kc-10"})
        src = re.search(r'id="app-frame" src="([^"]+)"', chart.text)
        assert src is not None and src.group(1).startswith(replicas.a)  # the launch goes to replica A
        import html

        page = submit_authorize_form(browser, browser.get(html.unescape(src.group(1))))
        assert str(page.url).startswith(replicas.b + "/smart/app/")  # the callback and the review: replica B
        assert page.status_code == 200 and "Contraindicated" in text_of(page)
        sid_path = str(page.url).removeprefix(replicas.b).split("#")[0]
        again = browser.get(replicas.a + sid_path)  # the session is shared: replica A shows it too
        assert again.status_code == 200 and "Contraindicated" in text_of(again)
    with psycopg.connect(replicas.database) as conn:
        sealed = conn.execute("SELECT sealed FROM smart_session").fetchall()
    assert sealed and all(b"access_token" not in bytes(row[0]) for row in sealed)  # tokens encrypted at rest


def test_while_the_database_is_down_calls_answer_503_and_recover_by_themselves(replicas: Replicas) -> None:
    statuses: list[int] = []
    replicas.cluster.stop("fast")
    try:
        deadline = time.monotonic() + 20
        while True:
            ready = [httpx.get(f"{base}/readyz", timeout=10) for base in (replicas.a, replicas.b)]
            if all(r.status_code == 503 for r in ready):
                break
            assert time.monotonic() < deadline, [r.status_code for r in ready]
        assert "database" in ready[0].text
        for base in (replicas.a, replicas.b):
            started = time.monotonic()
            r = _call(base, replicas, hook_request("10"))
            statuses.append(r.status_code)
            assert r.status_code == 503 and r.json()["resourceType"] == "OperationOutcome"
            assert time.monotonic() - started < 10  # within the budget, never a hang
        assert httpx.get(f"{replicas.a}/healthz", timeout=10).status_code == 200  # alive, only not ready
        # The SMART app, in the EHR's frame: a page saying so (503), not a stack trace.
        page = httpx.get(f"{replicas.a}/smart/app/some-session", cookies={"kcds_browser": "b"}, timeout=10)
        statuses.append(page.status_code)
        assert page.status_code == 503 and "briefly unavailable" in page.text
    finally:
        replicas.cluster.start()
    deadline = time.monotonic() + 30
    while True:
        codes = [httpx.get(f"{base}/readyz", timeout=10).status_code for base in (replicas.a, replicas.b)]
        r = _call(replicas.b, replicas, hook_request("10"))
        statuses.append(r.status_code)
        if codes == [200, 200] and r.status_code == 200:
            break
        assert time.monotonic() < deadline, codes
        time.sleep(0.5)
    assert 500 not in statuses


def test_metrics_of_each_replica_are_scrapable(replicas: Replicas) -> None:
    for base in (replicas.a, replicas.b):
        text = httpx.get(f"{base}/metrics", timeout=10).text
        assert "ketamine_cds_http_requests_total" in text

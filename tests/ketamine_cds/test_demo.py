"""``ketamine-cds demo``: one command starts everything on 127.0.0.1, serves the sandbox, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..conftest import fixture_bundles, free_port, wait_until_up


@pytest.mark.integration
def test_demo_starts_serves_and_stops_cleanly_on_ctrl_c() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("ketamine-cds")
    proc = subprocess.Popen([str(exe), "demo", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ})
    try:
        wait_until_up(f"{base}/sandbox/", proc)
        assert len(httpx.get(f"{base}/cds-services").json()["services"]) == 5
        page = httpx.post(f"{base}/sandbox/cds", data={"patient": "kc-17", "hook": "order-sign"}, timeout=30)
        assert "Esketamine: pregnancy on record" in page.text
        assert httpx.get(f"{base}/sandbox/fhir/Patient/kc-17").status_code == 401  # the FHIR server wants a token
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0
    assert f"Sandbox EHR (open this):  {base}/sandbox/" in out
    assert f"{len(fixture_bundles())} synthetic patients" in out and "Traceback" not in out

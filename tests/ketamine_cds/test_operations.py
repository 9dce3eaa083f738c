"""What an IT analyst runs, through the installed ``ketamine-cds`` command: every mistake ends in one clear line and a
non-zero exit (or the documented answer), never a traceback (issue 18, operations)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..cds_hooks.conftest import ISSUER, Keys, hook_request
from ..conftest import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("ketamine-cds"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETAMINE_CDS_")}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Starts ``ketamine-cds serve``; stops it afterwards and checks that its output holds no traceback."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(config: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"serve-{len(started)}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        proc = subprocess.Popen([EXE, "serve", "--config", str(config), "--port", str(port), *extra],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        output = Path(log.name).read_text(errors="replace")
        assert "Traceback" not in output, output[-3000:]


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("ketamine-cds: error: "), stderr
    return lines[0]


# 1. The audit log's directory.

@pytest.mark.integration
def test_serve_creates_the_audit_logs_directory_as_the_example_configuration_names_it(
        tmp_path: Path, serve: Any) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "ketamine-cds.toml"
    config.write_text(f'[cds]\npublic_base_url = "{base}"\naudit_log = "log/audit.jsonl"\n'
                      'feedback_db = "data/ketamine-cds.sqlite3"\n')
    checked = run("check-config", "--config", str(config))
    assert f"audit log {tmp_path / 'log' / 'audit.jsonl'}: created at first start and its directory" in checked.stdout
    proc = serve(config, port, "--workers", "2")
    wait_until_up(f"{base}/healthz", proc, timeout_s=60)
    assert httpx.post(f"{base}/cds-services/ketamine-order-sign", json=hook_request("10"), timeout=10
                      ).status_code == 401
    lines = (tmp_path / "log" / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "auth_rejected"


def test_an_audit_log_that_cannot_be_written_stops_serve_and_fails_check_config(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("a file where the directory should be")
    config = tmp_path / "ketamine-cds.toml"
    config.write_text(f'[cds]\naudit_log = "log/audit.jsonl"\nfeedback_db = "fb.sqlite3"\n'
                      f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_file = "jwks.json"\n')
    (tmp_path / "jwks.json").write_text(json.dumps(Keys().jwks()))
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1 and "Traceback" not in checked.stdout + checked.stderr
    assert f"audit log {tmp_path / 'log' / 'audit.jsonl'}: FAILED ({tmp_path / 'log'} is a file" in checked.stdout
    refused = run("serve", "--config", str(config), "--port", str(free_port()), "--workers", "2")
    assert refused.returncode == 2
    assert "cds.audit_log" in one_error_line(refused.stderr) and "cannot create its directory" in refused.stderr


# 2. A JWKS file without keys.

@pytest.mark.integration
def test_a_jwks_file_without_keys_is_named_by_check_config_and_the_log_and_calls_work_once_it_is_fixed(
        tmp_path: Path, serve: Any) -> None:
    keys = Keys()
    jwks = tmp_path / "ehr-jwks.json"
    jwks.write_text('{"keys": []}')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "ketamine-cds.toml"
    config.write_text(f'[cds]\npublic_base_url = "{base}"\nfeedback_db = "fb.sqlite3"\n'
                      f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_file = "ehr-jwks.json"\n')
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1 and f"the JWKS of client {ISSUER} has no keys" in checked.stdout
    assert "MissingKeyError" not in checked.stdout and "missing_key" not in checked.stdout
    proc = serve(config, port)
    wait_until_up(f"{base}/healthz", proc, timeout_s=30)
    path = "/cds-services/ketamine-order-sign"

    def call() -> int:
        return httpx.post(base + path, json=hook_request("10"), timeout=10,
                          headers={"Authorization": f"Bearer {keys.token(base + path)}"}).status_code

    # Ready: the replica's own database answers. An EHR's keys are not its dependency, nor the issuers anyone's.
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200 and ISSUER not in ready.text
    assert call() == 401 and call() == 401
    served = (tmp_path / "serve-0.log").read_text()
    assert served.count(f"the JWKS of client {ISSUER} has no keys") == 1  # the operator's log says it, once
    jwks.write_text(json.dumps(keys.jwks()))  # the analyst fixes the file; no restart
    assert call() == 200


def test_check_config_names_an_unreadable_key_in_a_jwks_file(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{"kty": "EC", "kid": "ehr-1"}]}))
    config = tmp_path / "k.toml"
    config.write_text(f'[cds]\nfeedback_db = "fb.sqlite3"\n[[cds.clients]]\nissuer = "{ISSUER}"\n'
                      'jwks_file = "jwks.json"\n')
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1
    assert f"the JWKS of client {ISSUER} holds key 1 (ehr-1), which cannot be read" in checked.stdout


# 3. A busy port.

def test_serve_on_a_busy_port_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "k.toml"
    config.write_text('[cds]\nfeedback_db = "fb.sqlite3"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("2", "1"):
            refused = run("serve", "--config", str(config), "--port", str(port), "--workers", workers)
            assert refused.returncode == 2, (workers, refused.stderr)
            error = [x for x in refused.stderr.splitlines() if "error" in x.lower()]
            assert error == [f"ketamine-cds: error: cannot listen on 127.0.0.1:{port}: the port is already in use "
                             "(another ketamine-cds serve?); stop it or choose another with --port"], refused.stderr
            assert "listening on" not in refused.stderr and "Traceback" not in refused.stderr


# 5. Placeholders, the encryption key and the migration, as an analyst meets them.

def test_check_config_warns_about_the_examples_untouched_placeholders(tmp_path: Path) -> None:
    keys = Keys()
    (tmp_path / "ehr-jwks.json").write_text(json.dumps(keys.jwks()))
    example = (ROOT / "ketamine-cds.example.toml").read_text()
    # The example's JWKS URL is on the network; the copy uses a file (the example's documented alternative).
    copied = example.replace('jwks_url = "https://ehr.example.org/.well-known/jwks.json"',
                             'jwks_file = "ehr-jwks.json"').replace('client_id = "ketamine-cds"',
                                                                    'client_id = "CHANGE-ME"')
    assert copied.count("ehr-jwks.json") == 2 and "CHANGE-ME" in copied
    config = tmp_path / "ketamine-cds.toml"
    config.write_text(copied)
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stdout
    warnings = [x for x in checked.stdout.splitlines() if x.startswith("warning: ")]
    for key, value in (("cds.public_base_url", "https://cds.example.org"),
                       ("cds.clients[0].issuer", "https://ehr.example.org/fhir"),
                       ("smart.client_id", "CHANGE-ME"),
                       ("smart.allowed_issuers[0]", "https://ehr.example.org/fhir"),
                       ("smart.frame_ancestors[0]", "https://ehr.example.org")):
        assert (f"warning: {key} {value!r} is a placeholder from the example configuration: set your site's value"
                in warnings), (key, warnings)


def test_a_configured_site_gets_no_placeholder_warning(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps(Keys().jwks()))
    config = tmp_path / "k.toml"
    config.write_text(f'[cds]\npublic_base_url = "https://cds.hospital.test"\nfeedback_db = "fb.sqlite3"\n'
                      f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_file = "jwks.json"\n'
                      '[smart]\nallowed_issuers = ["https://fhir.hospital.test/r4"]\n')
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 0 and "placeholder" not in checked.stdout


MIGRATE = "`ketamine-cds migrate --config FILE` (from a source checkout: `./dev run migrate --config FILE`)"


@pytest.mark.integration
def test_postgresql_without_a_key_file_then_without_a_schema_says_which_command_to_run(
        tmp_path: Path, postgres: Any) -> None:
    database = postgres.create_database("operations_walkthrough")
    (tmp_path / "jwks.json").write_text(json.dumps(Keys().jwks()))
    clients = f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_file = "jwks.json"\n'
    config = tmp_path / "ketamine-cds.toml"
    config.write_text(f'{clients}[storage]\ndatabase_url = "{database}"\n')
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1
    assert ("storage.encryption_key_file is required with PostgreSQL: SMART tokens are encrypted at rest with it; "
            "create one with `ketamine-cds generate-key FILE` (from a source checkout: `./dev run generate-key "
            "FILE`)") in checked.stdout

    key = tmp_path / "secrets" / "storage.key"
    config.write_text(f'{clients}[storage]\ndatabase_url = "{database}"\nencryption_key_file = "secrets/storage.key"\n')
    hint = (f"storage.encryption_key_file {key} does not exist: create it with `ketamine-cds generate-key {key}` "
            f"(from a source checkout: `./dev run generate-key {key}`)")
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1 and hint in checked.stdout
    refused = run("serve", "--config", str(config), "--port", str(free_port()))
    assert refused.returncode == 2 and hint in one_error_line(refused.stderr), refused.stderr

    assert run("generate-key", str(key)).returncode == 0
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 1 and f": run {MIGRATE}" in checked.stdout
    refused = run("serve", "--config", str(config), "--port", str(free_port()))
    assert refused.returncode == 2 and f"run {MIGRATE} first" in one_error_line(refused.stderr)
    assert run("migrate", "--config", str(config)).returncode == 0
    checked = run("check-config", "--config", str(config))
    assert checked.returncode == 0 and "reachable, schema" in checked.stdout, checked.stdout


def test_the_guides_say_once_how_to_type_the_commands_from_a_source_checkout() -> None:
    for guide in ("deployment.md", "registration.md"):
        text = " ".join((ROOT / "docs" / guide).read_text().split())
        assert text.count("from a source checkout, type `./dev run …`") == 1, guide

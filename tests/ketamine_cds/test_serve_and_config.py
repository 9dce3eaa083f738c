"""Settings, check-config and serve: what an IT team runs."""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ketamine_cds.app import open_shared_storage
from ketamine_cds.cli import main
from ketamine_cds.settings import Settings, SettingsError, audit_salt, load_settings

from ..cds_hooks.conftest import ISSUER, Keys, hook_request
from ..conftest import free_port, wait_until_up


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, Keys]]:
    keys = Keys()
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "jwks.json").write_text(json.dumps(keys.jwks()))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(tmp_path / "served"), **kw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", keys
    server.shutdown()
    server.server_close()


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "k.toml", '[cds]\npublic_base_url = "https://cds.example.org"\n'
                                               'fhir_budget_s = 2.5\n')
    monkeypatch.setenv("KETAMINE_CDS_CDS__FHIR_BUDGET_S", "1.5")
    settings = load_settings(config)
    assert settings.cds.fhir_budget_s == 1.5 and settings.cds.public_base_url == "https://cds.example.org"
    assert settings.cds.feedback_db == tmp_path / "ketamine-cds-feedback.sqlite3"


@pytest.mark.parametrize("body,message", [
    ("[cds\n", "not valid TOML"),
    ('[cds]\npublic_base_url = "ftp://x"\n', "http(s) URL"),
    ('[cds]\nunknown = 1\n', "cds.unknown"),
    ('[[cds.clients]]\nissuer = "https://ehr"\n', "exactly one of jwks_url or jwks_file"),
    ('[cds]\npublic_base_ur = "https://x"\n', "cds.public_base_ur: Extra inputs are not permitted (did you mean "
                                              "'public_base_url'?)"),
    ('[[cds.clients]]\nissuer = "a"\njwks_ur = "https://x"\n', "(did you mean 'jwks_url'?)"),
    ('[smart]\nallowed_isuers = []\n', "(did you mean 'allowed_issuers'?)"),
    ('[cdss]\nx = 1\n', "(did you mean 'cds'?)"),
])
def test_bad_configuration_is_a_clear_error(tmp_path: Path, body: str, message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "k.toml", body)
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(config)
    assert main(["check-config", "--config", str(config)]) == 2
    assert message.split("(")[0] in capsys.readouterr().err


def test_check_config_fetches_each_jwks_and_prints_what_to_register(
    tmp_path: Path, jwks_server: tuple[str, Keys], capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = jwks_server
    config = write_config(tmp_path / "k.toml", f"""
[cds]
public_base_url = "https://cds.example.org"
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "{url}"
tenant = "hospital-a"
""")
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "discovery URL: https://cds.example.org/cds-services" in out
    assert "order-sign           https://cds.example.org/cds-services/ketamine-order-sign" in out
    assert "https://cds.example.org/smart/launch" in out
    assert "JWKS ok, keys: ec-1 (EC), rsa-1 (RSA), ec-256 (EC), tenant hospital-a" in out


def test_check_config_reports_an_unreachable_jwks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "k.toml", f"""
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "http://127.0.0.1:9/jwks.json"
""")
    assert main(["check-config", "--config", str(config)]) == 1
    assert "JWKS FAILED" in capsys.readouterr().out


@pytest.mark.integration
def test_serve_answers_over_http_on_loopback(tmp_path: Path, jwks_server: tuple[str, Keys]) -> None:
    url, keys = jwks_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "k.toml", f"""
[cds]
public_base_url = "{base}"
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "{url}"
""")
    exe = Path(sys.executable).with_name("ketamine-cds")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        wait_until_up(f"{base}/cds-services", proc, timeout_s=20)
        path = "/cds-services/ketamine-order-sign"
        body = hook_request("10")
        r = httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {keys.token(base + path)}"})
        assert r.status_code == 200 and r.json()["cards"][0]["indicator"] == "critical"
        r = httpx.post(base + path, json=body)
        assert r.status_code == 401
        for claim in ("exp", "iat", "nbf"):  # JSON integers beyond any float once made a 500
            for huge in (10**400, -10**400):
                token = keys.token(base + path, **{claim: huge})
                r = httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401, (claim, huge, r.status_code)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert "Traceback" not in out
    assert "eyJ" not in out  # no token in any log line


def _salt_of(settings: Settings) -> str:
    storage = open_shared_storage(settings)
    try:
        return audit_salt(settings, lambda: storage.secret("audit_salt", lambda: secrets.token_hex(32)))
    finally:
        storage.close()


def test_the_audit_salt_is_random_kept_in_the_database_and_the_token_key_private(tmp_path: Path) -> None:
    config = write_config(tmp_path / "k.toml", '[cds]\nfeedback_db = "data/fb.sqlite3"\n')
    first = _salt_of(load_settings(config))
    assert len(first) == 64
    assert _salt_of(load_settings(config)) == first  # the same salt after a restart: hashes stay comparable
    key_file = tmp_path / "data" / "ketamine-cds-storage.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"  # the key sealing SMART tokens at rest
    other = write_config(tmp_path / "o.toml", '[cds]\nfeedback_db = "other/fb.sqlite3"\n')
    assert _salt_of(load_settings(other)) != first  # never a public default


def test_a_salt_file_from_an_earlier_release_is_kept(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ketamine-cds-audit-salt").write_text("e" * 64 + "\n")
    config = write_config(tmp_path / "k.toml", '[cds]\nfeedback_db = "data/fb.sqlite3"\n')
    assert _salt_of(load_settings(config)) == "e" * 64


def test_check_config_warns_about_unsafe_production_settings(
        tmp_path: Path, jwks_server: tuple[str, Keys], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = jwks_server
    config = write_config(tmp_path / "k.toml", f"""
[cds]
public_base_url = "http://cds.example.org"
audit_salt = "change-me"
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "{url}"
""")
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: cds.public_base_url http://cds.example.org is http" in out
    assert "warning: cds.audit_salt is short or a well-known value" in out
    assert "warning: smart.allowed_issuers is empty" in out


def test_the_shipped_example_configuration_is_valid_and_complete(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "ketamine-cds.example.toml"
    settings = load_settings(example)
    assert settings.cds.public_base_url == "https://cds.example.org" and settings.cds.clients
    import tomllib

    written = tomllib.loads(example.read_text())
    # Every setting of every section is shown (commented or not): the example is the reference an IT team edits.
    text = example.read_text()
    for section, model in (("cds", settings.cds), ("smart", settings.smart), ("storage", settings.storage),
                           ("server", settings.server), ("sessions", settings.sessions)):
        for key in type(model).model_fields:
            if key in ("clients", "audit_salt_file", "redirect_uri"):
                continue
            assert f"{key} =" in text, f"[{section}] {key} is not in the example"
    assert set(written) == {"cds", "smart", "storage", "server", "sessions"}


def test_check_config_prints_the_scopes_framing_and_prefetch_templates_to_register(
        tmp_path: Path, jwks_server: tuple[str, Keys], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = jwks_server
    config = write_config(tmp_path / "k.toml", f"""
[cds]
public_base_url = "https://cds.example.org"
[smart]
frame_ancestors = ["https://ehr.example.org"]
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "{url}"
""")
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    for version, suffix in (("v1", ".read"), ("v2", ".rs")):
        line = next(x for x in out.splitlines() if x.strip().startswith(f"{version}:"))
        for rtype in ("Patient", "Condition", "MedicationStatement", "MedicationRequest", "Medication",
                      "Observation", "AllergyIntolerance"):
            assert f"patient/{rtype}{suffix}" in line.split(), (version, rtype)
    assert "frame-ancestors (who may embed the app): https://ehr.example.org" in out
    assert "medicationRequests" in out and "{{context.patientId}}" in out
    assert "database sqlite:///" in out and "created at first start" in out
    assert "ketamine-session-discharge: encounter = Encounter/{{context.encounterId}}" in out
    assert "session appointment codes ([sessions] appointment_codes): (none" in out


def test_check_config_says_when_a_jwks_url_answers_with_a_web_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "login.html").write_text("<html><body>Sign in</body></html>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "served"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(tmp_path / "k.toml", f"""
[[cds.clients]]
issuer = "{ISSUER}"
jwks_url = "http://127.0.0.1:{server.server_address[1]}/login.html"
""")
        assert main(["check-config", "--config", str(config)]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert "not a JWKS (got text/html)" in capsys.readouterr().out


def test_the_registration_guide_lists_the_scopes_check_config_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "registration.md").read_text()
    config = write_config(tmp_path / "k.toml", "[cds]\npublic_base_url = \"https://cds.example.org\"\n")
    main(["check-config", "--config", str(config)])
    out = capsys.readouterr().out
    for version in ("v1", "v2"):
        printed = next(x.strip().removeprefix(f"{version}: ") for x in out.splitlines()
                       if x.strip().startswith(f"{version}:"))
        assert f"| {version} | `{printed}` |" in guide, version


@pytest.mark.integration
def test_serve_with_two_workers_shares_the_port_and_reports_every_workers_metrics(tmp_path: Path) -> None:
    import signal

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "k.toml", f'[cds]\npublic_base_url = "{base}"\n[server]\nworkers = 2\n')
    exe = Path(sys.executable).with_name("ketamine-cds")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(f"{base}/healthz", proc, timeout_s=60)
        # A new connection per request (no keep-alive), so that the requests spread over both workers.
        with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            for _ in range(40):
                assert http.get(f"{base}/cds-services").status_code == 200
            text = http.get(f"{base}/metrics").text
        counted = re.search(r'ketamine_cds_http_requests_total\{route="/cds-services",status="200"\} ([0-9.]+)', text)
        assert counted is not None and float(counted.group(1)) == 40  # both workers' requests, from either one
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful shutdown: exits by itself
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode in (0, -signal.SIGTERM) and "2 worker(s)" in out and "Traceback" not in out


def test_the_deployment_examples_configuration_is_valid(tmp_path: Path) -> None:
    deploy = (Path(__file__).resolve().parents[2] / "deploy" / "ketamine-cds.toml").read_text()
    (tmp_path / "database-url").write_text("postgresql://ketamine@db/ketamine_cds")
    (tmp_path / "storage.key").write_text("x")
    local = deploy.replace("/run/secrets/database-url", str(tmp_path / "database-url")).replace(
        "/run/secrets/storage-key", str(tmp_path / "storage.key"))
    settings = load_settings(write_config(tmp_path / "k.toml", local))
    assert settings.storage.database_url == "postgresql://ketamine@db/ketamine_cds"
    assert settings.server.workers == 2 and settings.server.trusted_proxies == ["*"]
    compose = (Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml").read_text()
    assert "cds-a:" in compose and "cds-b:" in compose and "postgres:" in compose and "nginx" in compose


def test_every_setting_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETAMINE_CDS_STORAGE__DATABASE_URL", "postgresql://ketamine@db/from_env")
    monkeypatch.setenv("KETAMINE_CDS_SERVER__WORKERS", "3")
    monkeypatch.setenv("KETAMINE_CDS_SESSIONS__APPOINTMENT_CODES", '["urn:site|SPRAVATO"]')
    settings = load_settings(write_config(tmp_path / "k.toml", "[server]\nworkers = 1\n"))
    assert settings.storage.database_url == "postgresql://ketamine@db/from_env"
    assert settings.server.workers == 3 and settings.sessions.appointment_codes == ["urn:site|SPRAVATO"]
    from ketamine_cds.settings import encryption_key_path

    with pytest.raises(SettingsError, match="encryption_key_file is required with PostgreSQL"):
        encryption_key_path(settings)


@pytest.mark.integration
def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path, jwks_server: tuple[str, Keys]) -> None:
    import signal
    import time as _time

    class SlowFhir(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            _time.sleep(1.5)  # the EHR's FHIR server is slow: the request is in flight when SIGTERM arrives
            body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    fhir = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFhir)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    url, keys = jwks_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "k.toml", f'[cds]\npublic_base_url = "{base}"\nfhir_budget_s = 5\n'
                          f'[[cds.clients]]\nissuer = "{ISSUER}"\njwks_url = "{url}"\n'
                          'fhir_server_networks = ["127.0.0.0/8"]\n')
    exe = Path(sys.executable).with_name("ketamine-cds")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"{base}/healthz", proc, timeout_s=30)
        path = "/cds-services/ketamine-order-sign"
        body = hook_request("10", prefetch={}, fhirServer=f"http://127.0.0.1:{fhir.server_address[1]}/fhir",
                            fhirAuthorization={"access_token": "t", "token_type": "Bearer"})
        result: dict[str, int] = {}

        def call() -> None:
            r = httpx.post(base + path, json=body, headers={"Authorization": f"Bearer {keys.token(base + path)}"},
                           timeout=30)
            result["status"] = r.status_code
        caller = threading.Thread(target=call)
        caller.start()
        _time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        out = proc.communicate(timeout=30)[0].decode()
    finally:
        fhir.shutdown()
        fhir.server_close()
        if proc.poll() is None:
            proc.kill()
    # The call in flight was answered (the slow server's empty Patient search: 412), then the process exited: uvicorn
    # re-raises the SIGTERM it caught once shutdown is done, so the exit status says "terminated by SIGTERM".
    assert result.get("status") == 412 and proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out

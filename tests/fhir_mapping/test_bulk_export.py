"""The Bulk Data client (``fhir_mapping.bulk_export``): against a real SEKMET server on loopback with SMART Backend
Services, and against a small in-process server for what a real one cannot be made to do (never finish, serve gzip,
put files elsewhere)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhir_mapping import GapReason, ResourceType
from fhir_mapping.bulk_export import (
    EXPORT_TYPES,
    BulkExportError,
    BulkSettings,
    bulk_export,
    default_scope,
    public_jwks,
    scope_covers,
)

from ..conftest import as_transaction, fixture_bundles, free_port, wait_until_up

pytestmark = pytest.mark.anyio

GROUP_MEMBERS = ("01", "02", "04")  # fixture prefixes; 05 is on the server but not in the Group
OUTSIDER = "05"
EXPORTED = ("Patient", "Condition", "MedicationStatement", "MedicationRequest", "Observation",
            "AllergyIntolerance", "Medication")
FILE_NAME = re.compile(r"[A-Z][A-Za-z]+\.\d{3}\.ndjson")


# ------------------------------------------------------------------------------------------------------------------
# Keys (generated here with cryptography)


def _rsa_pem(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _ec_jwk(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.write_text(json.dumps(ECKey.import_key(pem).as_dict(private=True)))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    return {"rsa": _rsa_pem(folder / "rsa.pem"), "ec": _ec_jwk(folder / "ec.jwk.json"),
            "stranger": _rsa_pem(folder / "stranger.pem")}


# ------------------------------------------------------------------------------------------------------------------
# A real SEKMET with SMART Backend Services


class BulkSekmet:
    def __init__(self, base_url: str, data_dir: Path, loader_token: str) -> None:
        self.base_url = base_url
        self.data_dir = data_dir
        self.loader_token = loader_token


def _bundle(prefix: str) -> dict[str, Any]:
    path = next(p for p in fixture_bundles() if p.name.startswith(prefix + "-"))
    return dict(json.loads(path.read_text()))


def _patient_id(bundle: dict[str, Any]) -> str:
    return str(next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"))


@pytest.fixture(scope="module")
def bulk_sekmet(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[BulkSekmet]:
    """SEKMET on 127.0.0.1 with ``server_auth: smart``: two registered Backend Services clients (RS384 and ES384
    JWKS), a static token for loading, four fixture patients and a Group of three of them."""
    work = tmp_path_factory.mktemp("bulk-sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    loader = "loader-" + os.urandom(8).hex()
    (work / "settings.yaml").write_text(json.dumps({
        "base_url": base, "host": "127.0.0.1", "port": port, "data_dir": str(work / "data"),
        "own_private_key_path": str(work / "keys" / "sekmet.pem"),
        "simulator": {"enabled": False, "auto": [], "delay_seconds": 0.3},
        "validation": {"inbound": "warn"}, "log_inbound": False,
        "server_auth": {
            "types": ["smart", "bearer"], "tokens": [loader], "enforce_scopes": True,
            "smart_clients": [
                # SEKMET's status and file endpoints are checked against scope "*": a wildcard read scope.
                {"client_id": "ketamine-screen", "jwks": public_jwks(keys["rsa"]), "scopes": "system/*.rs"},
                {"client_id": "ketamine-screen-ec", "jwks": public_jwks(keys["ec"]), "scopes": "system/*.rs"},
            ],
        },
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
        headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {loader}"}
        members = []
        for prefix in (*GROUP_MEMBERS, OUTSIDER):
            bundle = _bundle(prefix)
            r = httpx.post(base, json=as_transaction(bundle), headers=headers, timeout=30)
            assert r.status_code == 200, r.text[:500]
            if prefix in GROUP_MEMBERS:
                members.append({"entity": {"reference": f"Patient/{_patient_id(bundle)}"}})
        group = {"resourceType": "Group", "id": "screen-group", "type": "person", "actual": True, "member": members}
        r = httpx.put(f"{base}/Group/screen-group", json=group, headers=headers, timeout=30)
        assert r.status_code in (200, 201), r.text[:500]
        yield BulkSekmet(base, work / "data", loader)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _read_export(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            assert path.name.startswith(resource["resourceType"] + "."), path.name
            found[(resource["resourceType"], resource["id"])] = resource
    return found


def _expected(prefixes: tuple[str, ...], types: tuple[str, ...]) -> set[tuple[str, str]]:
    """The group patients' resources of the types: the Patient, and what names it (its compartment)."""
    expected: set[tuple[str, str]] = set()
    for prefix in prefixes:
        bundle = _bundle(prefix)
        pid = _patient_id(bundle)
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] not in types:
                continue
            if (r["resourceType"], r["id"]) == ("Patient", pid) or f'"Patient/{pid}"' in json.dumps(r):
                expected.add((r["resourceType"], r["id"]))
    return expected


def _no_staging_left(out_dir: Path) -> bool:
    return not [p for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}.partial")]


def _assert_nothing_left(out_dir: Path) -> None:
    assert not out_dir.exists()
    assert _no_staging_left(out_dir)


@pytest.mark.integration
async def test_group_export_holds_exactly_the_group_patients_resources(bulk_sekmet: BulkSekmet,
                                                                       keys: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    messages: list[str] = []
    out = tmp_path / "export"
    result = await bulk_export(bulk_sekmet.base_url, out, client_id="ketamine-screen", private_key=keys["rsa"],
                               scope="system/*.rs", group="screen-group", types=EXPORTED,
                               poll_limit_s=60, progress=messages.append)

    got = _read_export(out)
    assert set(got) == _expected(GROUP_MEMBERS, EXPORTED)
    outsider = _patient_id(_bundle(OUTSIDER))
    assert ("Patient", outsider) not in got
    assert {p.name for p in out.glob("*.ndjson")} == {f.path.name for f in result.files}
    assert all(FILE_NAME.fullmatch(f.path.name) for f in result.files)
    assert result.lines_by_type == {t: sum(1 for k in got if k[0] == t) for t in {k[0] for k in got}}
    assert result.lines_by_type["Patient"] == len(GROUP_MEMBERS)
    assert result.files_by_type == dict.fromkeys(result.lines_by_type, 1)
    assert set(result.empty_types) == {"AllergyIntolerance", "Medication"}  # none on record; not in a compartment
    assert result.transaction_time and "Group/screen-group/$export" in result.request
    assert result.requires_access_token is True
    assert result.gaps == () and result.error_files == ()
    assert result.granted_scope == "system/*.rs"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transactionTime"] == result.transaction_time
    assert {e["type"] for e in manifest["output"]} == set(result.lines_by_type)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    assert _no_staging_left(out)

    assert any(m.startswith("export in progress") for m in messages)  # SEKMET answers 202 + X-Progress first
    assert all("eyJ" not in m and "Bearer" not in m for m in messages)


@pytest.mark.integration
async def test_es384_jwk_key_and_a_patient_level_export(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                        tmp_path: Path) -> None:
    result = await bulk_export(bulk_sekmet.base_url, tmp_path / "all", client_id="ketamine-screen-ec",
                               private_key=keys["ec"], scope="system/*.rs", types=["Patient", "Condition"],
                               poll_limit_s=60)
    got = _read_export(tmp_path / "all")
    assert set(got) == _expected((*GROUP_MEMBERS, OUTSIDER), ("Patient", "Condition"))
    assert "Patient/$export" in result.request


@pytest.mark.integration
async def test_a_key_the_server_does_not_know_is_refused_in_one_line(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    with pytest.raises(BulkExportError) as caught:
        await bulk_export(bulk_sekmet.base_url, tmp_path / "out", client_id="ketamine-screen",
                          private_key=keys["stranger"], scope="system/*.rs", group="screen-group", types=EXPORTED)
    message = caught.value.message
    assert "refused an access token for client 'ketamine-screen'" in message and "invalid_client" in message
    assert "\n" not in message and "eyJ" not in message
    _assert_nothing_left(tmp_path / "out")


@pytest.mark.integration
async def test_an_unknown_group_is_a_refused_kick_off_in_one_line(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    with pytest.raises(BulkExportError) as caught:
        await bulk_export(bulk_sekmet.base_url, tmp_path / "out", client_id="ketamine-screen",
                          private_key=keys["rsa"], scope="system/*.rs", group="no-such-group", types=EXPORTED)
    assert "refused Group/no-such-group/$export: HTTP 404" in caught.value.message
    assert "\n" not in caught.value.message
    _assert_nothing_left(tmp_path / "out")


@pytest.mark.integration
async def test_an_export_that_fails_on_the_server_is_one_line(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                             tmp_path: Path) -> None:
    # SEKMET writes each export under data/bulk/<job>; a file in that place makes its export job fail (HTTP 500
    # with an OperationOutcome on the status URL).
    bulk = bulk_sekmet.data_dir / "bulk"
    saved = bulk_sekmet.data_dir / "bulk.saved"
    if bulk.exists():
        bulk.rename(saved)
    bulk.write_text("not a folder")
    try:
        with pytest.raises(BulkExportError) as caught:
            await bulk_export(bulk_sekmet.base_url, tmp_path / "out", client_id="ketamine-screen",
                              private_key=keys["rsa"], scope="system/*.rs", group="screen-group", types=EXPORTED,
                              poll_limit_s=30)
    finally:
        bulk.unlink()
        if saved.exists():
            saved.rename(bulk)
    assert "failed: HTTP 500" in caught.value.message and "\n" not in caught.value.message
    _assert_nothing_left(tmp_path / "out")


# ------------------------------------------------------------------------------------------------------------------
# A small in-process Bulk server for behaviour a real server cannot be made to show


BASE = "http://ehr.test/fhir"
FAST = BulkSettings(min_poll_interval_s=0.01, max_poll_interval_s=0.05, backoff_s=0.01)


class FakeBulk:
    """Discovery, a token endpoint, kick-off, a status URL whose answer the test sets, files the test sets."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.token_forms: list[dict[str, str]] = []
        self.polls = 0
        self.status: Callable[[int], Response] = lambda n: Response(status_code=202, headers={"Retry-After": "0"})
        self.files: dict[str, Callable[[], Response]] = {}
        self.token_status = 200
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "DELETE"])])

    async def handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.log.append((request.method, f"{request.url.hostname}{path}", dict(request.headers)))
        if path == "/fhir/.well-known/smart-configuration":
            return JSONResponse({"token_endpoint": "http://ehr.test/auth/token",
                                 "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                                 "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                                 "capabilities": ["client-confidential-asymmetric", "permission-v2"]})
        if path == "/auth/token":
            form = dict((await request.form()).items())
            self.token_forms.append({k: str(v) for k, v in form.items()})
            if self.token_status != 200:
                return JSONResponse({"error": "invalid_client"}, status_code=self.token_status)
            return JSONResponse({"access_token": f"tok-{len(self.token_forms)}", "token_type": "Bearer",
                                 "expires_in": 300, "scope": form.get("scope")})
        if path.endswith("/$export"):
            return Response(status_code=202, headers={"Content-Location": f"{BASE}/status/1"})
        if path == "/fhir/status/1":
            if request.method == "DELETE":
                return Response(status_code=202)
            self.polls += 1
            return self.status(self.polls)
        name = path.rsplit("/", 1)[-1]
        if name in self.files:
            return self.files[name]()
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))

    def calls(self, method: str, where: str) -> list[dict[str, str]]:
        return [h for m, w, h in self.log if m == method and w == where]


def manifest(output: list[dict[str, Any]], error: list[dict[str, Any]] | None = None,
             requires_token: bool = True) -> Callable[[int], Response]:
    def answer(n: int) -> Response:
        if n == 1:
            return Response(status_code=202, headers={"X-Progress": "50% done", "Retry-After": "0"})
        return JSONResponse({"transactionTime": "2026-12-01T00:00:00Z", "request": f"{BASE}/Group/g/$export",
                             "requiresAccessToken": requires_token, "output": output, "error": error or []})
    return answer


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


async def run(fake: FakeBulk, out: Path, key: Path, **kw: Any) -> Any:
    async with fake.client() as http:
        args: dict[str, Any] = {"client_id": "screen", "private_key": key, "group": "g", "types": EXPORTED,
                                "http": http, "poll_limit_s": 5, "settings": FAST}
        args.update(kw)
        return await bulk_export(BASE, out, **args)


async def test_a_server_that_never_finishes_is_cancelled_within_the_poll_limit(keys: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    fake = FakeBulk()
    fake.status = lambda n: Response(status_code=202, headers={"X-Progress": f"step {n}",
                                                               "Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})
    messages: list[str] = []
    with pytest.raises(BulkExportError) as caught:
        await run(fake, tmp_path / "out", keys["rsa"], poll_limit_s=0.3, progress=messages.append)
    assert "did not finish within 0.3 s; it was cancelled" in caught.value.message
    assert fake.polls >= 2 and fake.calls("DELETE", "ehr.test/fhir/status/1")
    assert "export in progress: step 1" in messages
    _assert_nothing_left(tmp_path / "out")


async def test_cancelling_the_task_cancels_the_export_and_leaves_nothing(keys: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    fake = FakeBulk()
    polled = asyncio.Event()

    def status(n: int) -> Response:
        polled.set()
        return Response(status_code=202, headers={"Retry-After": "0"})

    fake.status = status
    task = asyncio.create_task(run(fake, tmp_path / "out", keys["rsa"], poll_limit_s=60))
    await asyncio.wait_for(polled.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.calls("DELETE", "ehr.test/fhir/status/1")
    _assert_nothing_left(tmp_path / "out")


async def test_gzip_files_error_files_and_their_gaps(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    patients = ndjson({"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"})
    conditions = ndjson({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}})
    errors = ndjson(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                        "diagnostics": "Observation export failed for Patient/a"}]},
        {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational",
                                                        "diagnostics": "MedicationRequest partly"}]})
    fake.files = {
        # served gzipped as the file itself, and gzipped as a Content-Encoding
        "p.ndjson.gz": lambda: Response(gzip.compress(patients), media_type="application/gzip"),
        "c.ndjson": lambda: Response(gzip.compress(conditions), media_type="application/fhir+ndjson",
                                     headers={"Content-Encoding": "gzip"}),
        "e.ndjson": lambda: Response(errors, media_type="application/fhir+ndjson"),
    }
    fake.status = manifest([{"type": "Patient", "url": f"{BASE}/files/p.ndjson.gz?sig=secret", "count": 2},
                            {"type": "Condition", "url": f"{BASE}/files/c.ndjson"}],
                           [{"type": "OperationOutcome", "url": f"{BASE}/files/e.ndjson"}])
    out = tmp_path / "out"
    result = await run(fake, out, keys["rsa"])

    assert (out / "Patient.000.ndjson").read_bytes() == patients
    assert (out / "Condition.000.ndjson").read_bytes() == conditions
    assert (out / "error" / "OperationOutcome.000.ndjson").read_bytes() == errors
    assert [(f.resource_type, f.lines, f.declared_count) for f in result.files] == [("Patient", 2, 2),
                                                                                    ("Condition", 1, None)]
    assert [(i.severity, i.resource_types) for i in result.issues] == [("error", ("Observation",)),
                                                                       ("warning", ("MedicationRequest",))]
    assert [(g.resource_type, g.reason) for g in result.gaps] == [(ResourceType.OBSERVATION, GapReason.SERVER_ERROR)]
    assert "sig=secret" not in (out / "manifest.json").read_text()
    # requiresAccessToken: every file was fetched with the bearer token
    for name in ("p.ndjson.gz", "c.ndjson", "e.ndjson"):
        assert fake.calls("GET", f"ehr.test/fhir/files/{name}")[0]["authorization"] == "Bearer tok-1"
    assert fake.calls("DELETE", "ehr.test/fhir/status/1")  # the server is told the files can go


async def test_the_token_is_never_sent_to_another_server(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    fake.files = {"p.ndjson": lambda: Response(ndjson({"resourceType": "Patient", "id": "a"}))}
    files = [{"type": "Patient", "url": "http://storage.test/files/p.ndjson"}]
    fake.status = manifest(files, requires_token=True)
    with pytest.raises(BulkExportError) as caught:
        await run(fake, tmp_path / "refused", keys["rsa"])
    assert "is not on the FHIR server http://ehr.test/fhir;" in caught.value.message
    assert not fake.calls("GET", "storage.test/files/p.ndjson")
    _assert_nothing_left(tmp_path / "refused")

    fake.polls = 0
    fake.status = manifest(files, requires_token=False)
    result = await run(fake, tmp_path / "open", keys["rsa"])
    assert result.lines_by_type == {"Patient": 1}
    assert "authorization" not in fake.calls("GET", "storage.test/files/p.ndjson")[0]


async def test_the_client_assertion_follows_smart_backend_services(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    fake.status = manifest([])
    for key, alg in ((keys["rsa"], "RS384"), (keys["ec"], "ES384")):
        await run(fake, tmp_path / alg, key)
        fake.polls = 0
    assert len(fake.token_forms) == 2
    jtis = set()
    for form, (key, alg) in zip(fake.token_forms, ((keys["rsa"], "RS384"), (keys["ec"], "ES384")), strict=True):
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert form["scope"] == default_scope(EXPORTED, group=True)
        keyset = KeySet.import_key_set(cast(Any, public_jwks(key)))
        token = jwt.decode(form["client_assertion"], keyset, algorithms=[alg])
        claims = token.claims
        assert token.header["alg"] == alg and token.header["kid"] == public_jwks(key)["keys"][0]["kid"]
        assert claims["iss"] == claims["sub"] == "screen" and claims["aud"] == "http://ehr.test/auth/token"
        assert 0 < claims["exp"] - claims["iat"] <= 300
        jtis.add(claims["jti"])
    assert len(jtis) == 2
    kick_off = fake.calls("GET", "ehr.test/fhir/Group/g/$export")[0]
    assert kick_off["prefer"] == "respond-async" and kick_off["accept"] == "application/fhir+json"


async def test_a_refused_token_from_a_server_that_says_little(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    fake.token_status = 400
    with pytest.raises(BulkExportError) as caught:
        await run(fake, tmp_path / "out", keys["rsa"])
    assert caught.value.message.startswith("the authorization server refused an access token for client 'screen'")
    assert not fake.calls("GET", "ehr.test/fhir/Group/g/$export")
    _assert_nothing_left(tmp_path / "out")


async def test_bad_arguments_are_one_line_before_any_request(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.ndjson").write_text("{}\n")
    (tmp_path / "public.json").write_text(json.dumps(public_jwks(keys["rsa"])["keys"][0]))
    cases: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (lambda: run(fake, tmp_path / "full", keys["rsa"]), "is not an empty folder"),
        (lambda: run(fake, tmp_path / "x", tmp_path / "missing.pem"), "cannot read the private key file"),
        (lambda: run(fake, tmp_path / "x", tmp_path / "public.json"), "holds a public key"),
        (lambda: run(fake, tmp_path / "x", keys["rsa"], group="a/b"), "is not a FHIR id"),
        (lambda: run(fake, tmp_path / "x", keys["rsa"], types=["Patient", "../x"]), "not a FHIR resource type"),
    ]
    for call, expected in cases:
        with pytest.raises(BulkExportError, match=re.escape(expected)):
            await call()
    assert fake.log == []
    assert not (tmp_path / "x").exists()


def test_scopes() -> None:
    assert default_scope(["Patient", "Condition"]) == "system/Patient.rs system/Condition.rs"
    assert default_scope(["Patient"], v2=False, group=True) == "system/Patient.read system/Group.read"
    assert "system/Medication.rs" in default_scope(EXPORT_TYPES)
    assert scope_covers("system/*.rs", "Observation") and scope_covers("system/Observation.read", "Observation")
    assert scope_covers("system/Observation.cruds", "Observation")
    assert not scope_covers("system/Patient.rs", "Observation") and not scope_covers("patient/*.rs", "Patient")
    assert not scope_covers("system/Observation.c", "Observation")


def test_export_types_are_what_the_rules_read() -> None:
    from fhir_mapping import SEARCHED_TYPES

    assert (*(t.value for t in SEARCHED_TYPES), "Medication") == EXPORT_TYPES


async def test_ctrl_c_while_polling_cancels_the_export(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()

    def interrupt(message: str) -> None:
        if message.startswith("export in progress"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run(fake, tmp_path / "out", keys["rsa"], progress=interrupt)
    assert fake.calls("DELETE", "ehr.test/fhir/status/1")
    _assert_nothing_left(tmp_path / "out")


async def test_a_token_refused_during_a_long_export_is_renewed(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeBulk()
    done = manifest([])

    def status(n: int) -> Response:
        # the first poll finds the first token expired; the renewed token is accepted
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401) if n == 1 else done(n)

    fake.status = status
    await run(fake, tmp_path / "out", keys["rsa"])
    polls = fake.calls("GET", "ehr.test/fhir/status/1")
    assert [h["authorization"] for h in polls] == ["Bearer tok-1", "Bearer tok-2"]
    assert len({f["client_assertion"] for f in fake.token_forms}) == 2

"""The ``ketamine-cds`` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eligibility import (
    PolicyError,
    assess_pool,
    assessment_to_json,
    available_policies,
    load_policy,
    load_policy_file,
)
from fhir_mapping import ClientSettings, CodeSets, FhirClient, GapReason, InputError, ResourceType, read_path

from .settings import Settings, SettingsError, command, legacy_audit_salt_path, load_settings
from .text_report import render_text

EXIT_USAGE = 2


class CliError(Exception):
    """A problem with the user's input: printed as one line on stderr, exit code 2."""


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ketamine-cds",
        description="Clinical decision support for ketamine/esketamine in treatment-resistant depression.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="assess one patient from FHIR data (a file, a folder, or a FHIR server)")
    ev.add_argument("path", nargs="?", type=Path,
                    help="a Bundle, NDJSON file, prefetch object, or a folder of them")
    ev.add_argument("--fhir-server", metavar="URL", help="read the patient from this FHIR R4 server instead")
    ev.add_argument("--patient", metavar="ID", help="the patient's id (required with several patients or a server)")
    ev.add_argument("--token", metavar="T", help="bearer token for the FHIR server")
    ev.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                    help="evaluation date (default: today)")
    ev.add_argument("--policy", default="default",
                    help=f"policy id ({', '.join(available_policies())}) or a path to a policy TOML file")
    ev.add_argument("--format", choices=("json", "text"), default="json")
    ev.add_argument("--local-codes", type=Path, metavar="FILE",
                    help="TOML of site-local code additions (shape of fhir_mapping/data/condition_concepts.toml)")
    ev.add_argument("--timeout", type=float, default=10.0, help="total time budget for the FHIR server (s)")
    demo = sub.add_parser("demo", help="run the service, the SMART app and a sandbox EHR on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                      help="judge on this day instead of today (the fixtures' dates move to it)")

    serve = sub.add_parser("serve", help="run the CDS Hooks service (and the SMART app)")
    serve.add_argument("--config", type=Path, help="ketamine-cds.toml")
    serve.add_argument("--host", default=None, help="listen address (default: [server] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: [server] port, 8000)")
    serve.add_argument("--workers", type=int, default=None,
                       help="processes sharing the port (default: [server] workers, 1); state is shared through "
                            "the database")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="DEVELOPMENT ONLY: accept service calls without verifying the CDS client's JWT")

    check = sub.add_parser("check-config", help="validate the configuration, fetch each JWKS, print what to register")
    check.add_argument("--config", type=Path, required=True)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema ([storage] database_url)")
    migrate.add_argument("--config", type=Path)

    key = sub.add_parser("generate-key", help="write a new encryption key for [storage] encryption_key_file (0600)")
    key.add_argument("path", type=Path)

    screen = sub.add_parser("screen", help="the same rules over a whole Bulk FHIR export: a worklist of every patient")
    screen.add_argument("--bulk", type=Path, action="append", metavar="DIR", default=[],
                        help="a folder of Bulk Data NDJSON (repeat for several)")
    screen.add_argument("--out", type=Path, required=True, metavar="OUTDIR", help="where the outputs go (0700)")
    screen.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD", help="evaluation date")
    screen.add_argument("--policy", default="default", help="policy id or a path to a policy TOML file")
    screen.add_argument("--engine", choices=("local", "dask"), default="local",
                        help="local: DuckDB and a process pool (default); dask: a Dask cluster")
    screen.add_argument("--scheduler", metavar="tcp://HOST:PORT|tls://HOST:PORT",
                        help="--engine dask: join this scheduler (tcp:// on this machine only); default: start a "
                             "LocalCluster of --workers on 127.0.0.1")
    screen.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N")
    screen.add_argument("--memory-limit", metavar="SIZE", help="DuckDB's memory limit, e.g. 256MB (spills past it)")
    screen.add_argument("--buckets", type=int, metavar="N", help="patient buckets (default: from the input size)")
    screen.add_argument("--resume", action="store_true", help="continue an interrupted run in the same OUTDIR")
    screen.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto")
    screen.add_argument("--allow-missing-types", default="", metavar="T[,T...]",
                        help="resource types the export may lack without making every patient unknown for them")
    screen.add_argument("--pseudonymize-key", type=Path, metavar="FILE",
                        help="replace patient ids by HMAC-SHA256 under this key (no assessments.parquet)")
    screen.add_argument("--fhir-server", metavar="URL", help="export from this FHIR server (Bulk Data $export)")
    screen.add_argument("--group", metavar="ID", help="export this Group's patients (default: Patient/$export)")
    screen.add_argument("--client-id", metavar="ID", help="the SMART Backend Services client id")
    screen.add_argument("--private-key", type=Path, metavar="FILE",
                        help="the client's private key (PEM or JWK) for its signed assertion")
    screen.add_argument("--scope", metavar="S", help="scopes to ask for (default: system read of the types read)")
    report = sub.add_parser("feedback-report", help="accept / override rates by card kind and override reason")
    report.add_argument("--config", type=Path)
    return parser


def _demo(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("sekmet") is None:
        raise CliError("the demo needs its FHIR server: install the demo extra (pip install 'ketamine-cds[demo]')")
    from .demo import run_demo

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be between 1 and 65535, not {args.port}")
    return run_demo(args.port, args.as_of)


def _local_codes(path: Path) -> CodeSets:
    try:
        return CodeSets.load(path)
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.__class__.__name__})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{path}: not a valid code-additions file ({exc})") from exc


def _evaluate(args: argparse.Namespace) -> str:
    policy = load_policy_file(Path(args.policy)) if args.policy.endswith(".toml") else load_policy(args.policy)
    as_of = args.as_of or dt.date.today()
    if args.fhir_server:
        if args.path is not None:
            raise CliError("give either PATH or --fhir-server, not both")
        if not args.patient:
            raise CliError("--fhir-server needs --patient ID")
        if not args.fhir_server.startswith(("http://", "https://")):
            raise CliError(f"--fhir-server must be an http(s) URL: {args.fhir_server!r}")
        client = FhirClient(args.fhir_server, token=args.token,
                            settings=ClientSettings(budget_s=args.timeout))
        result = asyncio.run(client.fetch_patient(args.patient))
        pool = result.pool
        if result.patient_gap is not None and result.patient_gap.reason is GapReason.NOT_FOUND:
            # A patient the server does not have is never assessed (every face agrees: 412, "not found", exit 2).
            raise CliError(f"patient {args.patient!r} not found on {args.fhir_server}")
    else:
        if args.path is None:
            raise CliError("give a PATH to FHIR data, or --fhir-server URL --patient ID")
        pool = read_path(args.path)
    codesets = _local_codes(args.local_codes) if args.local_codes else None
    assessment, facts = assess_pool(pool, policy, as_of, args.patient, codesets)
    if args.format == "text":
        return render_text(assessment, facts)
    return json.dumps(assessment_to_json(assessment), indent=2)


def _migrate(path: Path | None) -> str:
    from storage import StorageError, upgrade_schema

    from .app import open_shared_storage

    settings = load_settings(path)
    store = open_shared_storage(settings, migrate=False, check_schema=False)
    try:
        before, after = upgrade_schema(store.engine)
    except StorageError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    if before == after:
        return f"database schema is current (revision {after})"
    return f"database schema upgraded from revision {before or 'none'} to {after}"


def _generate_key(path: Path) -> str:
    from storage import StorageError, load_or_create_key

    if path.exists():
        raise CliError(f"{path} exists; a new key would end every stored SMART login (remove it first to rotate)")
    try:
        load_or_create_key(path, create=True)
    except (OSError, StorageError) as exc:
        raise CliError(f"{path}: cannot write ({exc})") from exc
    return f"wrote a new encryption key to {path} (mode 0600)"


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from .app import open_shared_storage, prepare_audit_log

    settings = load_settings(args.config)
    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    workers = args.workers or settings.server.workers
    if not 0 <= port < 65536:
        raise CliError(f"--port must be between 0 and 65535, not {port}")
    if not 1 <= workers <= 64:
        raise CliError(f"--workers must be between 1 and 64, not {workers}")
    # Checked once here, before any worker starts: a schema behind this release (or no database), an audit log that
    # cannot be written or a port already taken stops serve with one line, where a worker would die in a traceback.
    open_shared_storage(settings).close()
    prepare_audit_log(settings.cds.audit_log)
    _check_port_free(host, port)
    if args.insecure_no_auth:
        print("!" * 78 + "\n! --insecure-no-auth: CDS client JWTs are NOT verified. Local development only. !\n"
              + "!" * 78, file=sys.stderr)
    elif not settings.cds.clients:
        print("ketamine-cds: warning: no [[cds.clients]] configured: every service call will get 401",
              file=sys.stderr)
    # Every worker builds its app from the same configuration (uvicorn's factory), passed on in the environment.
    if args.config is not None:
        os.environ["KETAMINE_CDS_CONFIG"] = str(args.config.resolve())
    if args.insecure_no_auth:
        os.environ["KETAMINE_CDS_INSECURE_NO_AUTH"] = "1"
    print(f"ketamine-cds: discovery at {settings.cds.public_base_url}/cds-services "
          f"(listening on http://{host}:{port}, {workers} worker(s))", file=sys.stderr)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker is a process: prometheus-client's multiprocess mode lets any worker's /metrics report all.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ketamine-cds-metrics-")
    proxies = settings.server.trusted_proxies
    uvicorn.run("ketamine_cds.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
                timeout_graceful_shutdown=int(settings.server.graceful_shutdown_s), server_header=False)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuses a port another process listens on. Binding the way uvicorn will (SO_REUSEADDR, the host's address
    family) and releasing at once: uvicorn's own failure is a log line after "listening on", and with several
    workers the exit status alone is easy to miss."""
    import errno
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(f"cannot listen on {host}:{port}: the port is already in use (another ketamine-cds "
                               "serve?); stop it or choose another with --port") from exc
            if exc.errno == errno.EACCES:
                raise CliError(f"cannot listen on {host}:{port}: permission denied (ports below 1024 need "
                               "privileges)") from exc
            raise CliError(f"cannot listen on {host}:{port} ({exc.strerror or exc.__class__.__name__})") from exc


def _jwks_problem(response: Any) -> str | None:
    """Why an HTTP answer is not a JWKS, in the words an IT analyst needs ("not a JWKS (got text/html)")."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower() or "no content type"
    if response.status_code != 200:
        return f"HTTP {response.status_code} ({media})"
    try:
        data = response.json()
    except ValueError:
        return f"not a JWKS (got {media})"
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        return f"not a JWKS (got {media} without a \"keys\" array)"
    return None


def _print_registration(settings: Settings) -> None:
    """What an EHR analyst types into the EHR: scopes, framing origins, prefetch templates."""
    from cds_hooks import TEMPLATES
    from smart_app import csp
    from smart_app.oauth import RESOURCE_TYPES

    print("SMART scopes to register (EHR launch; standalone uses launch/patient instead of launch):")
    for version, suffix in (("v1", ".read"), ("v2", ".rs")):
        scopes = " ".join([*(f"patient/{t}{suffix}" for t in RESOURCE_TYPES), "launch", "openid", "fhirUser"])
        if settings.smart.offline_access:
            scopes += " offline_access"
        print(f"  {version}: {scopes}")
    ancestors = settings.smart.frame_ancestors
    shown = " ".join(ancestors) if ancestors else "(none: only the app's own origin)"
    print(f"frame-ancestors (who may embed the app): {shown}")
    print(f"  Content-Security-Policy sent: {csp(ancestors, 'NONCE')}")
    print("prefetch templates of the order services (as discovery lists them; register all of them):")
    for key, template in TEMPLATES.items():
        print(f"  {key:<22} {template}")
    from cds_hooks import SERVICES

    for sid in ("ketamine-session-book", "ketamine-session-discharge"):
        extra = {k: v for k, v in SERVICES[sid].prefetch().items() if k not in TEMPLATES}
        print(f"  {sid}: " + "; ".join(f"{k} = {v}" for k, v in extra.items()))
    codes = settings.sessions.appointment_codes
    print("session appointment codes ([sessions] appointment_codes): "
          + (", ".join(codes) if codes else "(none: sessions are recognised by their words and basedOn orders)"))


async def _check_config(path: Path) -> int:
    from cds_hooks import SERVICES
    from cds_hooks.auth import JwksProblem, import_jwks
    from fhir_mapping.outbound import http_client

    settings = load_settings(path)
    load_policy(settings.cds.policy)
    base = settings.cds.public_base_url
    problems = 0
    print(f"configuration {path}: valid")
    print(f"policy: {settings.cds.policy}")
    print(f"discovery URL: {base}/cds-services" + (" (requires JWT)" if settings.cds.discovery_requires_auth else ""))
    print("services (register these in the EHR; each JWT aud must equal the URL):")
    for sid, service in SERVICES.items():
        print(f"  {service.hook:<20} {base}/cds-services/{sid}")
        print(f"  {'feedback':<20} {base}/cds-services/{sid}/feedback")
    redirect = settings.smart.redirect_uri or base + "/smart/callback"
    print(f"SMART app launch URL: {base}/smart/launch   redirect URI: {redirect}")
    if settings.smart.private_key_file is not None:
        print(f"SMART client JWKS URL: {base}/smart/.well-known/jwks.json")
    _print_registration(settings)
    print(f"CORS allowed origins: {', '.join(settings.cds.cors_allow_origins) or '(none)'}")
    problems += _check_storage(settings)
    problems += _check_audit_log(settings.cds.audit_log)
    print("trusted CDS clients:")
    if not settings.cds.clients:
        print("  (none: every service call will get 401)")
        problems += 1
    async with http_client(timeout=5.0) as http:
        for c in settings.cds.clients:
            where = f"file {c.jwks_file}" if c.jwks_file is not None else str(c.jwks_url)
            try:
                if c.jwks_file is not None:
                    try:
                        data = json.loads(c.jwks_file.read_text(encoding="utf-8"))
                    except OSError as exc:
                        raise JwksProblem(f"cannot be read ({exc.__class__.__name__})") from exc
                    except ValueError as exc:
                        raise JwksProblem("is not JSON") from exc
                else:
                    response = await http.get(str(c.jwks_url), headers={"Accept": "application/json"})
                    problem = _jwks_problem(response)
                    if problem is not None:
                        print(f"  {c.issuer}: JWKS FAILED at {c.jwks_url}: {problem}")
                        problems += 1
                        continue
                    data = response.json()
                keys = import_jwks(data)
                kids = ", ".join(f"{k.kid} ({k.key_type})" for k in keys.keys)
                print(f"  {c.issuer}: JWKS ok, keys: {kids}" + (f", tenant {c.tenant}" if c.tenant else ""))
            except JwksProblem as exc:
                print(f"  {c.issuer}: JWKS FAILED: {exc.about(c.issuer)} ({where})")
                problems += 1
            except Exception as exc:  # report every failure of a JWKS the same way, then carry on
                print(f"  {c.issuer}: JWKS FAILED at {where} ({exc.__class__.__name__}: {exc})")
                problems += 1
    warnings = config_warnings(settings)
    for warning in warnings:
        print(f"warning: {warning}")
    if problems:
        print(f"{problems} problem(s) found")
        return 1
    return 0


def _check_audit_log(path: Path | None) -> int:
    """Whether ``serve`` will be able to write the audit log (0 or 1 problem); nothing is created here."""
    import os

    if path is None:
        print("audit log: standard error")
        return 0
    if path.is_dir():
        print(f"audit log {path}: FAILED (a directory, not a file)")
        return 1
    if path.exists():
        writable = os.access(path, os.W_OK)
        print(f"audit log {path}: " + ("writable" if writable else "FAILED (not writable)"))
        return 0 if writable else 1
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        print(f"audit log {path}: FAILED ({existing} is a file, not a directory)")
        return 1
    if not os.access(existing, os.W_OK | os.X_OK):
        print(f"audit log {path}: FAILED (cannot create it in {existing}: not writable)")
        return 1
    created = "" if existing == path.parent else f" and its directory {path.parent}"
    print(f"audit log {path}: created at first start{created}")
    return 0


def _check_storage(settings: Settings) -> int:
    """Whether the shared-state database answers and its schema is current (0 or 1 problem)."""
    from storage import schema_status

    from .app import open_shared_storage
    from .settings import database_url

    url = database_url(settings)
    shown = url.split("@", 1)[-1] if "@" in url else url  # never print a password
    if url.startswith("sqlite") and not settings.cds.feedback_db.exists() and not settings.storage.database_url:
        print(f"database {shown}: embedded SQLite, created at first start")
        return 0
    try:
        store = open_shared_storage(settings, migrate=False, check_schema=False)
    except SettingsError as exc:
        print(f"database {shown}: FAILED ({exc})")
        return 1
    try:
        current, head = schema_status(store.engine)
    except Exception as exc:  # any driver error: report it in one line
        print(f"database {shown}: FAILED ({exc.__class__.__name__})")
        return 1
    finally:
        store.close()
    if current != head and not url.startswith("sqlite"):
        print(f"database {shown}: schema at {current or 'none'}, needs {head}: run {command('migrate --config FILE')}")
        return 1
    print(f"database {shown}: reachable, schema {current or 'new (created at first start)'}")
    return 0


#: Hosts reserved for documentation (RFC 2606): a value still naming one was copied from an example, not set.
_EXAMPLE_HOSTS = ("example.org", "example.com", "example.net")
#: Settings whose value is a secret: named in a warning, never printed.
_SECRET_KEYS = frozenset({"storage.database_url", "smart.client_secret", "cds.audit_salt"})


def _is_placeholder(value: str) -> bool:
    from urllib.parse import urlsplit

    if "CHANGE" in value:
        return True
    try:
        host = urlsplit(value).hostname if "://" in value else None
    except ValueError:
        return False
    return host is not None and any(host == h or host.endswith("." + h) for h in _EXAMPLE_HOSTS)


def placeholder_warnings(settings: Settings) -> list[str]:
    """Values still as ``ketamine-cds.example.toml`` ships them (``https://cds.example.org``, ``CHANGE…``): allowed,
    so that the example is a valid file, but a service configured with them answers no real EHR."""
    from pydantic import BaseModel

    found: list[str] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(f"{prefix}.{name}" if prefix else name, getattr(value, name))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, str | Path) and _is_placeholder(str(value)):
            shown = "" if prefix in _SECRET_KEYS else f" {str(value)!r}"
            found.append(f"{prefix}{shown} is a placeholder from the example configuration: set your site's value")

    walk("", settings)
    return found


def config_warnings(settings: Settings) -> list[str]:
    """What is allowed but unsafe in production."""
    found = placeholder_warnings(settings)
    if not settings.cds.public_base_url.startswith("https://"):
        found.append(f"cds.public_base_url {settings.cds.public_base_url} is http: tokens, cookies and PHI cross "
                     "the network in clear; use https outside a loopback demo")
    salt = settings.cds.audit_salt
    if salt and (salt in ("change-me", "ketamine-cds", "demo", "salt") or len(salt) < 16):
        found.append("cds.audit_salt is short or a well-known value: the audit log's patient hashes can be "
                     "reversed by trying ids; leave it empty to have a random salt generated and kept")
    elif not salt and not legacy_audit_salt_path(settings).exists():
        found.append("cds.audit_salt is empty: a random salt is generated on first start and kept in the database; "
                     "back the database up (the audit log's hashes cannot be matched to patients without it)")
    if not settings.smart.allowed_issuers:
        found.append("smart.allowed_issuers is empty: the SMART app refuses every launch")
    return found


def _feedback_report(path: Path | None) -> str:
    from cds_hooks import OVERRIDE_REASONS

    from .app import open_shared_storage
    from .settings import uses_postgresql

    settings = load_settings(path)
    if not uses_postgresql(settings) and not settings.cds.feedback_db.exists():
        raise CliError(f"no feedback database at {settings.cds.feedback_db}")
    store = open_shared_storage(settings)
    try:
        rows = store.report(OVERRIDE_REASONS)
    finally:
        store.close()
    if not rows:
        return "no feedback recorded yet"
    lines = [f"{'card kind':<18} {'issued':>6} {'outcome':<11} {'count':>5} {'rate':>6}  override reason"]
    for r in rows:
        rate = f"{100 * r['count'] / r['issued']:.0f}%" if r["issued"] else "-"
        lines.append(f"{r['kind']:<18} {r['issued']:>6} {r['outcome']:<11} {r['count']:>5} {rate:>6}  {r['reason']}")
    return "\n".join(lines)


def _check_screen_arguments(args: argparse.Namespace) -> None:
    if bool(args.bulk) == bool(args.fhir_server):
        raise CliError("screen needs --bulk DIR or --fhir-server URL (one of them)")
    if args.fhir_server and (not args.client_id or args.private_key is None):
        raise CliError("--fhir-server needs --client-id and --private-key (SMART Backend Services)")
    if args.workers < 1 or (args.buckets is not None and args.buckets < 1):
        raise CliError("--workers and --buckets must be at least 1")
    if args.scheduler and args.engine != "dask":
        raise CliError("--scheduler is for --engine dask")


def _allowed_missing_types(spec: str) -> frozenset[str]:
    allowed = frozenset(t.strip() for t in spec.split(",") if t.strip())
    unknown = sorted(allowed - set(t.value for t in ResourceType))
    if unknown:
        raise CliError(f"--allow-missing-types: unknown resource type {', '.join(unknown)}")
    return allowed


def _pseudonymisation_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise CliError(f"{path}: cannot read the pseudonymisation key ({exc.__class__.__name__})") from exc
    if len(key) < 16:
        raise CliError(f"{path}: a pseudonymisation key needs at least 16 bytes")
    return key


def _screen(args: argparse.Namespace) -> int:
    from population import Interrupted, ScreenError, ScreenOptions, run_screen

    _check_screen_arguments(args)
    policy_path = Path(args.policy)
    policy = load_policy_file(policy_path) if args.policy.endswith(".toml") else load_policy(args.policy)
    policy_text = policy_path.read_bytes() if args.policy.endswith(".toml") else args.policy.encode("utf-8")
    allowed = _allowed_missing_types(args.allow_missing_types)
    key = _pseudonymisation_key(args.pseudonymize_key)
    bulk = tuple(args.bulk)
    export_dir = args.out / "_export"
    if args.fhir_server:
        folder, empty = _bulk_export(args, export_dir)
        bulk = (folder,)
        # A completed export writes no file for a type the server holds none of: known empty, not unknown.
        allowed |= empty
    opts = ScreenOptions(bulk=bulk, out=args.out, as_of=args.as_of or dt.date.today(), policy=policy,
                         policy_text=policy_text, workers=args.workers, buckets=args.buckets,
                         memory_limit=args.memory_limit, resume=args.resume, progress=args.progress,
                         allow_missing_types=allowed, pseudonymize_key=key, engine=args.engine,
                         scheduler=args.scheduler)
    try:
        summary = run_screen(opts)
    except ScreenError as exc:
        raise CliError(str(exc)) from exc
    except Interrupted:
        print(f"ketamine-cds screen: interrupted; run the same command with --resume to continue "
              f"({args.out}/_work holds the state)", file=sys.stderr)
        return 130
    if args.fhir_server:
        shutil.rmtree(export_dir, ignore_errors=True)  # the export is PHI: only the outputs stay
        (args.out / "_export-empty-types.json").unlink(missing_ok=True)
    print(json.dumps({"patients": summary["patients"], "verdicts": summary["verdicts"], "out": str(args.out)}))
    return 0


def _bulk_export(args: argparse.Namespace, export_dir: Path) -> tuple[Path, frozenset[str]]:
    """Download the export into ``OUTDIR/_export`` (kept for ``--resume`` when complete, deleted after the run);
    returns it and the types the completed export holds none of (within the granted scope)."""
    from fhir_mapping.bulk_export import BulkExportError, bulk_export

    empty_file = args.out / "_export-empty-types.json"
    if args.resume and (export_dir / "manifest.json").exists() and empty_file.exists():
        return export_dir, frozenset(json.loads(empty_file.read_text(encoding="utf-8")))
    shutil.rmtree(export_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)

    def say(message: str) -> None:
        if args.progress != "none":
            print(f"ketamine-cds screen: export: {message}", file=sys.stderr)

    try:
        result = asyncio.run(bulk_export(args.fhir_server, export_dir, client_id=args.client_id,
                                         private_key=args.private_key, scope=args.scope, group=args.group,
                                         progress=say))
    except BulkExportError as exc:
        raise CliError(f"bulk export: {exc}") from exc
    unauthorized = {g.resource_type.value for g in result.gaps}
    empty = frozenset(t for t in result.empty_types if t not in unauthorized)
    empty_file.write_text(json.dumps(sorted(empty)), encoding="utf-8")
    empty_file.chmod(0o600)
    return export_dir, empty


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            print(_evaluate(args))
            return 0
        if args.command == "demo":
            return _demo(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return asyncio.run(_check_config(args.config))
        if args.command == "migrate":
            print(_migrate(args.config))
            return 0
        if args.command == "generate-key":
            print(_generate_key(args.path))
            return 0
        if args.command == "screen":
            return _screen(args)
        if args.command == "feedback-report":
            print(_feedback_report(args.config))
            return 0
    except (CliError, InputError, PolicyError, SettingsError) as exc:
        print(f"ketamine-cds: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``ketamine-cds`` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from eligibility import (
    PolicyError,
    assess_pool,
    assessment_to_json,
    available_policies,
    load_policy,
    load_policy_file,
)
from fhir_mapping import ClientSettings, CodeSets, FhirClient, InputError, read_path

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
    demo = sub.add_parser("demo", help="assess every bundled synthetic patient and print the results")
    demo.add_argument("--policy", default="default", help="policy id")
    return parser


def _demo(args: argparse.Namespace) -> str:
    from .demo import run_demo

    return run_demo(load_policy(args.policy))


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
    else:
        if args.path is None:
            raise CliError("give a PATH to FHIR data, or --fhir-server URL --patient ID")
        pool = read_path(args.path)
    codesets = _local_codes(args.local_codes) if args.local_codes else None
    assessment, facts = assess_pool(pool, policy, as_of, args.patient, codesets)
    if args.format == "text":
        return render_text(assessment, facts)
    return json.dumps(assessment_to_json(assessment), indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            print(_evaluate(args))
            return 0
        if args.command == "demo":
            print(_demo(args))
            return 0
    except (CliError, InputError, PolicyError) as exc:
        print(f"ketamine-cds: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

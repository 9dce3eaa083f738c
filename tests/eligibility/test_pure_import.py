"""The pure core is pure on import (issue 22 item 5): the rules and the facts they read load no HTTP, web or
pydantic module, so a process that only assesses (a worker of the screen, a test) never pays for them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHART = Path(__file__).resolve().parents[2] / "fixtures" / "patients" / "01-candidate-statements.json"

#: Top-level packages the rules never need: the HTTP client, the web faces' frameworks, the FHIR models' base.
IMPURE = ("httpx", "httpcore", "pydantic", "pydantic_core", "fastapi", "starlette", "authlib", "fhir")


def _loaded_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after ``statement`` (this process has them all loaded)."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("statement", ["import eligibility", "import fhir_mapping"])
def test_importing_the_core_loads_no_http_or_pydantic_module(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert statement.split()[1] in loaded  # the probe really imported the package
    assert loaded.isdisjoint(IMPURE), sorted(loaded & set(IMPURE))


def test_assessing_a_chart_needs_no_http_module() -> None:
    # Reading a chart validates its entries (pydantic, on first use), but assessing it never reaches the client.
    loaded = _loaded_after(
        "import datetime as dt, pathlib, eligibility, fhir_mapping\n"
        f"pool = fhir_mapping.read_path(pathlib.Path({str(CHART)!r}))\n"
        "assessment, _ = eligibility.assess_pool(pool, eligibility.load_policy('default'), dt.date(2026, 11, 1))\n"
        "assert assessment.verdict is eligibility.Verdict.CANDIDATE, assessment.verdict")
    assert "pydantic" in loaded  # validation happened: the probe assessed a real chart
    assert loaded.isdisjoint({"httpx", "httpcore", "fastapi", "starlette", "authlib"})


def test_the_client_is_still_served_by_the_package() -> None:
    # The faces import the client from the package as before; the name loads httpx on first use.
    loaded = _loaded_after("from fhir_mapping import FhirClient\nassert FhirClient.__module__ == 'fhir_mapping.client'")
    assert "httpx" in loaded

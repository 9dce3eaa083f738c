"""The built wheel tells the truth about what it needs: installed alone in a fresh virtual environment, it evaluates
a chart and offers the demo (whose FHIR server comes with the ``demo`` extra)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ..conftest import PATIENTS, ROOT

pytestmark = pytest.mark.integration


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by ./dev"
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True)
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_demo_patients_and_no_test_expectations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    patients = [n for n in names if n.startswith("ketamine_cds/demo_patients/")]
    assert len(patients) == len([p for p in PATIENTS.glob("*.json") if not p.name.endswith(".expected.json")])
    assert not [n for n in names if n.endswith(".expected.json")]
    assert "eligibility/policies/default.toml" in names and "fhir_mapping/data/brand_names.csv" in names


def test_installed_alone_it_evaluates_a_chart_and_offers_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    subprocess.run([_uv(), "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True, env=env)
    subprocess.run([_uv(), "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)], check=True,
                   capture_output=True, env=env)
    exe = str(venv / "bin" / "ketamine-cds")
    run = subprocess.run([exe, "demo", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and "--port" in run.stdout
    chart = PATIENTS / "10-bipolar-snomed.json"
    run = subprocess.run([exe, "evaluate", str(chart), "--as-of", "2026-11-01"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verdict"] == "contraindicated"
    # Without the demo extra the demo says what is missing, and exits 2 (no traceback).
    run = subprocess.run([exe, "demo", "--port", "8765"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 2 and "ketamine-cds[demo]" in run.stderr and "Traceback" not in run.stderr

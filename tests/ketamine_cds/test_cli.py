"""The ``ketamine-cds evaluate`` command: JSON and text output, and clean errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mapping import SEARCHES
from ketamine_cds.cli import main

from ..conftest import PATIENTS, Sekmet, fixture_bundles

FIX = PATIENTS / "01-candidate-statements.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "evaluate", str(FIX), "--as-of", "2026-11-01")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert list(data)[:11] == ["patient", "as_of", "policy", "verdict", "course", "reasons", "depression",
                               "treatment_resistance", "severity", "contraindications", "workup"]
    assert data["course"] is None  # no ketamine or esketamine dose on record
    assert data["patient"] == "Patient/kc-01" and data["verdict"] == "candidate"
    assert set(data["contraindications"]) == {
        "psychosis", "bipolar", "uncontrolled_hypertension", "cardiovascular_disease", "aneurysm_or_avm",
        "intracerebral_hemorrhage", "substance_use", "pregnancy", "ketamine_hypersensitivity"}
    trial = data["treatment_resistance"]["trials"][0]
    assert {"ingredient", "matched_by", "daily_dose_mg", "weeks_at_adequate_dose", "outcome", "evidence"} <= set(trial)
    assert trial["evidence"] == ["MedicationStatement/kc-01-ms2"]


def test_text_output_is_a_readable_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evaluate", str(PATIENTS / "13-recent-mi.json"), "--as-of", "2026-11-01",
                       "--format", "text")
    assert code == 0
    assert "Verdict: CONTRAINDICATED" in out
    assert "[!] serious heart disease" in out and "Petr Novak" in out


def test_policy_choice(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(PATIENTS / "09-psychosis-history.json")
    assert json.loads(run(capsys, "evaluate", path, "--as-of", "2026-11-01")[1])["verdict"] == "contraindicated"
    out = run(capsys, "evaluate", path, "--as-of", "2026-11-01", "--policy", "esketamine-us-label")[1]
    assert json.loads(out)["verdict"] == "candidate"


@pytest.mark.parametrize("args,message", [
    (["evaluate", "missing.json"], "no such file"),
    (["evaluate", str(PATIENTS)], "choose one with --patient"),
    (["evaluate", str(FIX), "--policy", "nope"], "unknown policy"),
    (["evaluate"], "give a PATH"),
    (["evaluate", "--fhir-server", "http://127.0.0.1:9/fhir"], "needs --patient"),
    (["evaluate", "--fhir-server", "ftp://x", "--patient", "p"], "http(s) URL"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                                    message: str) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", ["{oops", '{"resourceType": "Bundle", "entry": 5}', '"just a string"'])
def test_not_json_or_not_fhir_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = run(capsys, "evaluate", str(bad))
    if code == 0:  # a Bundle with a broken entry list is read as an empty Bundle, reported, never a crash
        return
    assert code == 2 and err.startswith("ketamine-cds: error:")


def test_local_code_additions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    # A site that codes its own "schizoaffective, unspecified" locally as a SNOMED extension code.
    local.write_text('[psychosis]\nextra = [{system = "SNOMEDCT", codes = ["36923009"]}]\n')
    path = str(PATIENTS / "03-candidate-dose-text-only.json")
    assert json.loads(run(capsys, "evaluate", path, "--as-of", "2026-11-01")[1])["verdict"] == "candidate"
    out = run(capsys, "evaluate", path, "--as-of", "2026-11-01", "--local-codes", str(local))[1]
    assert json.loads(out)["verdict"] == "candidate"  # 36923009 is not this patient's code
    local.write_text('[psychosis]\nextra = [{system = "SNOMEDCT", codes = ["370143000"]}]\n')
    out = run(capsys, "evaluate", path, "--as-of", "2026-11-01", "--local-codes", str(local))[1]
    assert json.loads(out)["contraindications"]["psychosis"]["status"] == "present"
    local.write_text("not = [toml")
    code, _, err = run(capsys, "evaluate", path, "--local-codes", str(local))
    assert code == 2 and "not a valid code-additions file" in err


def test_a_bad_date_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(FIX), "--as-of", "31/12/2026"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err


@pytest.mark.integration
def test_evaluate_from_a_fhir_server(capsys: pytest.CaptureFixture[str], sekmet: Sekmet) -> None:
    code, out, _ = run(capsys, "evaluate", "--fhir-server", sekmet.base_url, "--patient", "kc-17",
                       "--as-of", "2026-11-01")
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "contraindicated" and data["data_gaps"] == []


def test_an_unreachable_fhir_server_is_unknown_not_absent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evaluate", "--fhir-server", "http://127.0.0.1:9/fhir", "--patient", "p",
                       "--as-of", "2026-11-01", "--timeout", "2")
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "needs_workup"
    assert data["depression"]["status"] == "unknown"
    assert {c["status"] for c in data["contraindications"].values()} == {"unknown"}
    assert len(data["data_gaps"]) == len(SEARCHES)  # one gap per search of the table


def test_demo_verdict_table_lists_every_fixture_patient() -> None:
    from eligibility import load_policy
    from ketamine_cds.demo import verdict_table

    table = verdict_table(load_policy("default"))
    assert len(table.splitlines()) == len(fixture_bundles())
    assert "10-bipolar-snomed" in table and "contraindicated" in table


def test_demo_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--port", "70000")
    assert code == 2 and "--port" in err

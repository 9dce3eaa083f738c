"""``screen --fhir-server``: the Bulk Data client (SMART Backend Services) against a real SEKMET, then the screen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ketamine_cds.cli import main

from ..conftest import fixture_bundles
from ..fhir_mapping.test_bulk_export import GROUP_MEMBERS, BulkSekmet
from ..fhir_mapping.test_bulk_export import bulk_sekmet as bulk_sekmet
from ..fhir_mapping.test_bulk_export import keys as keys

pytestmark = pytest.mark.integration


def _expected(prefix: str) -> dict[str, object]:
    path = next(p for p in fixture_bundles() if p.name.startswith(prefix + "-"))
    return dict(json.loads(path.with_name(path.stem + ".expected.json").read_text()))


def test_a_group_export_is_screened_with_the_cards_answers(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["screen", "--fhir-server", bulk_sekmet.base_url, "--group", "screen-group",
                 "--client-id", "ketamine-screen", "--private-key", str(keys["rsa"]), "--out", str(out),
                 # SEKMET checks its status and file URLs against a wildcard scope (tests/fhir_mapping).
                 "--scope", "system/*.rs", "--as-of", "2026-11-01", "--workers", "1", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = [line.split(",") for line in (out / "worklist.csv").read_text().splitlines()[1:]]
    expected = {_expected(p)["patient"].removeprefix("Patient/"): _expected(p)["verdict"]  # type: ignore[union-attr]
                for p in GROUP_MEMBERS}
    assert {r[0]: r[1] for r in rows} == expected  # the Group's patients only, each with its fixture's verdict
    assert not (out / "_export").exists() and not (out / "_work").exists()  # the export (PHI) is not kept


def test_a_refused_key_is_one_line_and_writes_nothing(bulk_sekmet: BulkSekmet, keys: dict[str, Path],
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["screen", "--fhir-server", bulk_sekmet.base_url, "--group", "screen-group",
                 "--client-id", "ketamine-screen", "--private-key", str(keys["ec"]), "--out", str(out),
                 "--as-of", "2026-11-01", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "worklist.csv").exists()

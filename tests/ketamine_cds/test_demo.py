"""``ketamine-cds demo``: one command starts everything on 127.0.0.1, serves the sandbox, and stops on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ketamine_cds import demo
from ketamine_cds.cli import main

from ..conftest import ROOT, fixture_bundles, free_port, wait_until_up


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
    # A demo started without --as-of judges today (the day it started; a run across midnight may say either).
    days = {dt.date.today() - dt.timedelta(days=1), dt.date.today()}
    assert any(f"judged as of {day} (today;" in out for day in days), out.splitlines()[0]


def test_demo_as_of_pins_the_day_it_judges_on(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[int, dt.date | None]] = []
    monkeypatch.setattr(demo, "run_demo", lambda port, as_of=None: started.append((port, as_of)) or 0)
    assert main(["demo", "--port", "8123", "--as-of", "2026-12-07"]) == 0
    assert main(["demo", "--port", "8124"]) == 0
    assert started == [(8123, dt.date(2026, 12, 7)), (8124, None)]


def test_demo_refuses_an_as_of_that_is_not_a_date(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--as-of", "2026-13-01"])
    assert exit_.value.code == 2 and "not a date (YYYY-MM-DD)" in capsys.readouterr().err


# -- the docs say what ships ------------------------------------------------------------------------------------

def _number(path: Path, pattern: str) -> int:
    found = re.search(pattern, path.read_text(encoding="utf-8"))
    assert found is not None, f"{path.name} does not say how many patients there are ({pattern})"
    return int(found.group(1))


def test_the_readme_gives_the_number_of_patients_the_demo_loads() -> None:
    shipped = len(demo.demo_patients())
    assert shipped == len(fixture_bundles())  # the package's patients are the fixtures
    assert _number(ROOT / "README.md", r"loaded with (\d+) synthetic patients") == shipped
    assert _number(ROOT / "fixtures" / "README.md", r"(\d+) patients, one row each") == shipped


def test_the_fixtures_readme_has_one_row_per_patient_and_none_for_a_patient_that_is_not_there() -> None:
    rows = re.findall(r"^\| `(\d\d-[a-z0-9-]+)` \|", (ROOT / "fixtures" / "README.md").read_text(), re.M)
    assert sorted(rows) == [p.stem for p in demo.demo_patients()]


def test_the_readmes_table_of_patients_says_what_every_patient_shows() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    ranges = [(int(a), int(b or a)) for a, b in re.findall(r"^\| (\d\d)(?:[\u2013-](\d\d))? \| \S", text, re.M)]
    numbers = [int(p.stem[:2]) for p in demo.demo_patients()]
    missing = [n for n in numbers if not any(lo <= n <= hi for lo, hi in ranges)]
    assert not missing, f"README.md's table of patients does not say what patients {missing} show"
    empty = [(lo, hi) for lo, hi in ranges if not any(lo <= n <= hi for n in numbers)]
    assert not empty, f"README.md's table of patients names patients that do not ship: {empty}"

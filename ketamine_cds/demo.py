"""``ketamine-cds demo``: the whole product on 127.0.0.1 from one origin, with no network beyond loopback.

/cds-services… the CDS Hooks service; /smart/… the SMART app; /sandbox/… the stand-in EHR (chart page, SMART
authorization server, SEKMET FHIR server at /sandbox/fhir loaded with the synthetic fixture patients, CDS client).

The demo judges as of today: the sandbox moves every fixture's dates by (today - ``FIXTURES_DAY``) when it loads
them, and the service, the SMART app and the sandbox share one clock (``ehr_sandbox.DemoClock``); ``--as-of`` pins
another day. Since every date moves by the same days, each patient gets the verdict the fixtures' own expected
assessments state for ``FIXTURES_DAY`` (tests/ketamine_cds/test_demo_dates.py shows it).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from eligibility import Policy, assess_pool
from fhir_mapping import ResourcePool, add_json

from .settings import CdsClientSettings, CdsSettings, Settings, SmartSettings

# The demo's synthetic patients, as package data (in a checkout, a link to fixtures/patients).
FIXTURES = Path(str(resources.files("ketamine_cds").joinpath("demo_patients")))
#: The synthetic charts describe patients as of this day (fixtures/build_patients.py ``AS_OF``); the demo moves
#: their dates to the day it judges on.
FIXTURES_DAY = dt.date(2026, 11, 1)


def demo_patients() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("[0-9]*.json") if not p.name.endswith(".expected.json"))


def verdict_table(policy: Policy, as_of: dt.date = FIXTURES_DAY) -> str:
    """Every bundled synthetic patient with the verdict the policy reaches on ``as_of``, its dates moved there as
    the sandbox moves them."""
    from ehr_sandbox.timeshift import shift_bundle

    rows = []
    for path in demo_patients():
        pool = ResourcePool()
        add_json(pool, shift_bundle(json.loads(path.read_text()), (as_of - FIXTURES_DAY).days), path.name)
        a, _ = assess_pool(pool, policy, as_of)
        rows.append(f"  {path.stem:<42} {a.verdict.value}")
    return "\n".join(rows)


def demo_settings(base: str, work: Path) -> Settings:
    return Settings(
        cds=CdsSettings(
            public_base_url=base,
            # The sandbox's FHIR server is on loopback, beside this service: its fhirServer may resolve there.
            clients=[CdsClientSettings(issuer=f"{base}/sandbox", jwks_url=f"{base}/sandbox/cds-client/jwks.json",
                                       fhir_server_networks=["127.0.0.0/8", "::1/128"])],
            feedback_db=work / "feedback.sqlite3",
            audit_log=work / "audit.jsonl",
            audit_salt="demo",
        ),
        smart=SmartSettings(client_id="ketamine-cds", allowed_issuers=[f"{base}/sandbox/fhir"],
                            default_iss=f"{base}/sandbox/fhir"),
    )


def build_demo(port: int, work: Path, as_of: dt.date | None = None, **create: Any) -> Any:
    """The combined ASGI app of the demo (also used by the end-to-end tests): judged today, or on ``as_of``.

    ``create``: further options of ``create_app`` (tests pass ``configure_logging=False``).
    """
    from ehr_sandbox import DemoClock, Sandbox, SandboxClient, SandboxConfig

    from .app import create_app

    clock = DemoClock.on(as_of) if as_of is not None else DemoClock()
    base = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(SandboxConfig(
        public_base_url=base, data_dir=work / "sandbox", fixtures=FIXTURES, app_launch_url=f"{base}/smart/launch",
        app_clients=[SandboxClient("ketamine-cds", [f"{base}/smart/callback"], "none")], clock=clock,
        fixtures_as_of=FIXTURES_DAY))
    # One clock for the three: the CDS service (order and session hooks), the SMART app and the sandbox EHR.
    app = create_app(demo_settings(base, work), sandbox=sandbox.app, on_startup=[sandbox.load_fixtures],
                     today=clock.today, now=clock.now, **create)
    app.state.sandbox = sandbox
    app.state.clock = clock
    return app


def banner_line(count: int, judged_on: dt.date, pinned: bool) -> str:
    moved = (judged_on - FIXTURES_DAY).days
    how = "pinned with --as-of" if pinned else "today"
    return (f"ketamine-cds demo: {count} synthetic patients (default policy), judged as of {judged_on.isoformat()} "
            f"({how}; the fixtures' dates moved {moved:+d} days from {FIXTURES_DAY.isoformat()}):")


def run_demo(port: int, as_of: dt.date | None = None) -> int:
    import uvicorn

    from eligibility import load_policy

    with tempfile.TemporaryDirectory(prefix="ketamine-cds-demo-") as tmp:
        base = f"http://127.0.0.1:{port}"
        app = build_demo(port, Path(tmp), as_of)
        judged_on = app.state.clock.today()
        print(banner_line(len(demo_patients()), judged_on, as_of is not None), file=sys.stderr)
        print(verdict_table(load_policy("default"), judged_on), file=sys.stderr)
        print(f"""
  Sandbox EHR (open this):  {base}/sandbox/
  CDS Hooks discovery:      {base}/cds-services
  SMART app launch URL:     {base}/smart/launch   (standalone: {base}/smart/launch?iss={base}/sandbox/fhir)
  Sandbox FHIR server:      {base}/sandbox/fhir   (needs a token the sandbox issued)
Press Ctrl-C to stop.""", file=sys.stderr)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0

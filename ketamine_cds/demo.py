"""``ketamine-cds demo``: the whole product on 127.0.0.1 from one origin, with no network beyond loopback.

/cds-services… the CDS Hooks service; /smart/… the SMART app; /sandbox/… the stand-in EHR (chart page, SMART
authorization server, SEKMET FHIR server at /sandbox/fhir loaded with the synthetic fixture patients, CDS client).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from eligibility import Policy, assess_pool
from fhir_mapping import read_path

from .settings import CdsClientSettings, CdsSettings, Settings, SmartSettings

# The demo's synthetic patients, as package data (in a checkout, a link to fixtures/patients).
FIXTURES = Path(str(resources.files("ketamine_cds").joinpath("demo_patients")))
#: The synthetic charts describe patients as of this day; the demo assesses them on it.
DEMO_DAY = dt.date(2026, 11, 1)


def demo_patients() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("[0-9]*.json") if not p.name.endswith(".expected.json"))


def verdict_table(policy: Policy) -> str:
    """Every bundled synthetic patient with the verdict the policy reaches on the demo's day."""
    rows = []
    for bundle in demo_patients():
        a, _ = assess_pool(read_path(bundle), policy, DEMO_DAY)
        rows.append(f"  {bundle.stem:<42} {a.verdict.value}")
    return "\n".join(rows)


def demo_settings(base: str, work: Path) -> Settings:
    return Settings(
        cds=CdsSettings(
            public_base_url=base,
            clients=[CdsClientSettings(issuer=f"{base}/sandbox", jwks_url=f"{base}/sandbox/cds-client/jwks.json")],
            feedback_db=work / "feedback.sqlite3",
            audit_log=work / "audit.jsonl",
            audit_salt="demo",
        ),
        smart=SmartSettings(client_id="ketamine-cds", allowed_issuers=[f"{base}/sandbox/fhir"],
                            default_iss=f"{base}/sandbox/fhir"),
    )


def build_demo(port: int, work: Path, today: Any = None) -> Any:
    """The combined ASGI app of the demo (also used by the end-to-end tests)."""
    from ehr_sandbox import Sandbox, SandboxClient, SandboxConfig

    from .app import create_app

    base = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(SandboxConfig(
        public_base_url=base, data_dir=work / "sandbox", fixtures=FIXTURES, app_launch_url=f"{base}/smart/launch",
        app_clients=[SandboxClient("ketamine-cds", [f"{base}/smart/callback"], "none")]))
    app = create_app(demo_settings(base, work), sandbox=sandbox.app, on_startup=[sandbox.load_fixtures],
                     today=today)
    app.state.sandbox = sandbox
    return app


def run_demo(port: int) -> int:
    import uvicorn

    from eligibility import load_policy

    with tempfile.TemporaryDirectory(prefix="ketamine-cds-demo-") as tmp:
        base = f"http://127.0.0.1:{port}"
        # The fixtures describe patients as of 2026-11-01: assess them on that day so the demo tells their stories.
        app = build_demo(port, Path(tmp), today=lambda: DEMO_DAY)
        count = len(demo_patients())
        print(f"ketamine-cds demo: {count} synthetic patients "
              "(default policy, as of 2026-11-01):", file=sys.stderr)
        print(verdict_table(load_policy("default")), file=sys.stderr)
        print(f"""
  Sandbox EHR (open this):  {base}/sandbox/
  CDS Hooks discovery:      {base}/cds-services
  SMART app launch URL:     {base}/smart/launch   (standalone: {base}/smart/launch?iss={base}/sandbox/fhir)
  Sandbox FHIR server:      {base}/sandbox/fhir   (needs a token the sandbox issued)
Press Ctrl-C to stop.""", file=sys.stderr)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0

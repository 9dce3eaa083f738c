"""The CDS service's options come from the settings, which are the one source of every number and switch:
``CdsOptions`` keeps no default of its own that could drift from the settings' default."""

from __future__ import annotations

import datetime as dt
from dataclasses import MISSING, fields
from zoneinfo import ZoneInfo

import pytest

from cds_hooks import CdsOptions
from cds_hooks.fhir_servers import FhirServerCheck
from ketamine_cds.app import create_app
from ketamine_cds.settings import Settings

pytestmark = pytest.mark.anyio

#: The options that are the running app's parts rather than settings.
_PARTS = {"policy", "storage", "verifier", "http", "today", "now", "audit_salt", "fhir_servers"}


def test_cds_options_have_no_defaults_of_their_own() -> None:
    defaulted = [f.name for f in fields(CdsOptions) if f.default is not MISSING or f.default_factory is not MISSING]
    assert defaulted == []


async def test_every_option_is_the_settings_value(settings: Settings) -> None:
    # Values unlike the settings' defaults: an option that kept a number of its own would not show them.
    cds, sessions = settings.cds, settings.sessions
    cds.discovery_requires_auth = True
    cds.max_body_bytes = 123_457
    cds.fhir_budget_s = 1.75
    cds.fhir_max_response_bytes = 7_000_001
    cds.fhir_max_total_bytes = 9_000_003
    cds.repeat_window_s = 42.0
    cds.max_cards = 7
    sessions.appointment_codes = ["http://snomed.info/sct|1234567"]
    sessions.display_timezone = "Europe/Berlin"
    sessions.max_appointments = 9
    app = create_app(settings, today=lambda: dt.date(2026, 11, 1), configure_logging=False)
    options: CdsOptions = app.state.options
    try:
        read = {
            "public_base_url": options.public_base_url,
            "discovery_requires_auth": options.discovery_requires_auth,
            "max_body_bytes": options.max_body_bytes,
            "fhir_budget_s": options.fhir_budget_s,
            "fhir_max_response_bytes": options.fhir_max_response_bytes,
            "fhir_max_total_bytes": options.fhir_max_total_bytes,
            "repeat_window_s": options.repeat_window_s,
            "max_cards": options.max_cards,
            "session_codes": options.session_codes,
            "display_tz": options.display_tz,
            "max_session_appointments": options.max_session_appointments,
            "smart_launch_url": options.smart_launch_url,
        }
        assert read == {
            "public_base_url": "http://cds.test",
            "discovery_requires_auth": True,
            "max_body_bytes": 123_457,
            "fhir_budget_s": 1.75,
            "fhir_max_response_bytes": 7_000_001,
            "fhir_max_total_bytes": 9_000_003,
            "repeat_window_s": 42.0,
            "max_cards": 7,
            "session_codes": frozenset({"http://snomed.info/sct|1234567"}),
            "display_tz": ZoneInfo("Europe/Berlin"),
            "max_session_appointments": 9,
            "smart_launch_url": "http://cds.test/smart/launch",
        }
        # Every option is either read above or one of the app's parts: a new option must be given a setting.
        assert {f.name for f in fields(CdsOptions)} == set(read) | _PARTS
        assert options.policy.id == cds.policy and options.today() == dt.date(2026, 11, 1)
        assert isinstance(options.fhir_servers, FhirServerCheck)
    finally:
        app.state.storage.close()
        assert options.http is not None
        await options.http.aclose()

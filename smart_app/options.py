"""What the SMART app is built from (the composition root fills it from the settings)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from .discovery import SmartConfigurations
from .errors import LaunchOutcome
from .logins import Store
from .oauth import ClientCredentials


@dataclass
class SmartOptions:
    """The options of the running SMART app. No defaults of its own: the settings are the one source of every value
    (``ketamine_cds.app.smart_options`` builds them from the settings, tests included)."""

    public_base_url: str
    credentials: ClientCredentials
    redirect_uri: str
    allowed_issuers: list[str]
    store: Store
    #: The client every EHR call goes through; its owner (the app's lifespan) closes it.
    http: httpx.AsyncClient
    frame_ancestors: list[str]
    default_iss: str | None
    offline_access: bool
    policy: str
    fhir_budget_s: float
    today: Callable[[], dt.date]
    #: Called with each callback's outcome: the metrics' feed (the composition root sets it).
    on_launch: Callable[[LaunchOutcome], None] | None = None
    #: Each EHR's smart-configuration, cached (built from ``http``).
    configurations: SmartConfigurations = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.configurations = SmartConfigurations(self.http)

    @property
    def secure(self) -> bool:
        return self.public_base_url.startswith("https://")

    def issuer_allowed(self, iss: str) -> bool:
        return iss.rstrip("/") in {i.rstrip("/") for i in self.allowed_issuers}

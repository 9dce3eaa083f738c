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
    public_base_url: str
    credentials: ClientCredentials
    redirect_uri: str
    allowed_issuers: list[str]
    store: Store
    #: The client every EHR call goes through; its owner (the app's lifespan) closes it.
    http: httpx.AsyncClient
    frame_ancestors: list[str] = field(default_factory=list)
    default_iss: str | None = None
    offline_access: bool = False
    policy: str = "default"
    fhir_budget_s: float = 10.0
    #: Called with each callback's outcome: the metrics' feed.
    on_launch: Callable[[LaunchOutcome], None] | None = None
    today: Callable[[], dt.date] = dt.date.today
    #: Each EHR's smart-configuration, cached (built from ``http``).
    configurations: SmartConfigurations = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.configurations = SmartConfigurations(self.http)

    @property
    def secure(self) -> bool:
        return self.public_base_url.startswith("https://")

    def issuer_allowed(self, iss: str) -> bool:
        return iss.rstrip("/") in {i.rstrip("/") for i in self.allowed_issuers}

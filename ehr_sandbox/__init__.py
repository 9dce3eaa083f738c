"""The local stand-in EHR for the demo and the tests: chart page, SMART authorization server, SEKMET FHIR server
behind a token check, and a CDS Hooks client. Production code never imports this package."""

from .auth_server import LaunchContext, SandboxAuthServer, SandboxClient
from .fhir_gate import scope_allows
from .sandbox import Sandbox, SandboxConfig
from .timeshift import DemoClock, shift_bundle, shift_resource, shift_value

__all__ = ["DemoClock", "LaunchContext", "Sandbox", "SandboxAuthServer", "SandboxClient", "SandboxConfig",
           "scope_allows", "shift_bundle", "shift_resource", "shift_value"]

"""The local stand-in EHR for the demo and the tests: chart page, SMART authorization server, SEKMET FHIR server
behind a token check, and a CDS Hooks client. Production code never imports this package."""

from .auth_server import LaunchContext, SandboxAuthServer, SandboxClient
from .fhir_gate import scope_allows
from .sandbox import Sandbox, SandboxConfig

__all__ = ["LaunchContext", "Sandbox", "SandboxAuthServer", "SandboxClient", "SandboxConfig", "scope_allows"]

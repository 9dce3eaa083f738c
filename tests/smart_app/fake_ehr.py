"""What the SMART tests' stand-in EHRs answer alike: the issuer and its smart-configuration (EHR launch, SMART v2
scopes, PKCE S256). Each test module's ``Ehr`` adds the token answers its tests need."""

from __future__ import annotations

from typing import Any

ISS = "https://ehr.test/fhir"
#: Where the app reads the EHR's smart-configuration (relative to the issuer's host).
DISCOVERY = "/fhir/.well-known/smart-configuration"


def smart_configuration() -> dict[str, Any]:
    return {"issuer": ISS, "authorization_endpoint": "https://ehr.test/auth", "token_endpoint": "https://ehr.test/token",
            "capabilities": ["launch-ehr", "permission-v2"], "code_challenge_methods_supported": ["S256"]}

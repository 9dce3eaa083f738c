"""The SMART on FHIR review app: EHR and standalone launch, and the review page behind a card's verdict."""

from .logins import Store
from .oauth import ClientCredentials, OAuthProblem, granted_types, requested_scopes
from .routes import SmartOptions, build_router, csp

__all__ = ["ClientCredentials", "OAuthProblem", "SmartOptions", "Store", "build_router", "csp", "granted_types",
           "requested_scopes"]

"""The SMART on FHIR review app: EHR and standalone launch, and the review page behind a card's verdict."""

from .errors import LaunchOutcome, LaunchProblem, OAuthProblem, ReviewProblem, SmartProblem
from .launches import Authorization, complete_launch, start_launch
from .logins import Store
from .oauth import ClientCredentials, granted_types, requested_scopes
from .options import SmartOptions
from .routes import build_router, csp, problem_handler

__all__ = ["Authorization", "ClientCredentials", "LaunchOutcome", "LaunchProblem", "OAuthProblem", "ReviewProblem",
           "SmartOptions", "SmartProblem", "Store", "build_router", "complete_launch", "csp", "granted_types",
           "problem_handler", "requested_scopes", "start_launch"]

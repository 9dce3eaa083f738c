"""The CDS Hooks 2.0 service: discovery, order-select / order-sign / patient-view, feedback, JWT security."""

from .audit import AuditEvent, LogEvent
from .auth import JwksCache, JwtRefusal, JwtRejected, JwtVerifier, ReplayStore, TrustedClient, VerifiedCaller
from .cards import OVERRIDE_REASONS, CardContext, order_cards, patient_view_card
from .definitions import SERVICES, CdsOptions, ServiceDefinition
from .errors import CdsError, IssueSeverity, IssueType
from .models import Card, CdsRequest, CdsResponse, FeedbackRequest
from .prefetch import PREFETCH_KEYS, TEMPLATES, gather_patient_data
from .router import build_router, handle_cds_error

__all__ = [
    "OVERRIDE_REASONS",
    "PREFETCH_KEYS",
    "SERVICES",
    "TEMPLATES",
    "AuditEvent",
    "Card",
    "CardContext",
    "CdsError",
    "CdsOptions",
    "CdsRequest",
    "CdsResponse",
    "FeedbackRequest",
    "IssueSeverity",
    "IssueType",
    "JwksCache",
    "JwtRefusal",
    "JwtRejected",
    "JwtVerifier",
    "LogEvent",
    "ReplayStore",
    "ServiceDefinition",
    "TrustedClient",
    "VerifiedCaller",
    "build_router",
    "gather_patient_data",
    "handle_cds_error",
    "order_cards",
    "patient_view_card",
]

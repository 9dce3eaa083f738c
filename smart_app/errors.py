"""What can go wrong in the SMART app, as one tree. Every problem is something a person can act on: it becomes a page
with a title, a message in our own words and an HTTP status (one exception handler renders them all:
``routes.problem_handler``), never a stack trace and never text an EHR or a URL wrote.

    SmartProblem             a page: title, message, status (and Retry-After when waiting helps)
     ├── LaunchProblem       a launch or its callback refused: no or unknown EHR, unknown or spent state, another
     │                       browser, expired, access denied, too many pending; carries the launch's outcome
     ├── OAuthProblem        the EHR's side of OAuth could not be used: discovery, the token exchange, the id_token,
     │                       a refresh (oauth.py)
     └── ReviewProblem       the chart cannot be read for the review: server down, patient unknown or refused
                             (review.py)

A callback's outcome (the metrics' ``result``) is stated where the problem is raised, as a :class:`LaunchOutcome`:
a :class:`LaunchProblem` names its own; any other problem in a callback is a launch that ``FAILED``.
"""

from __future__ import annotations

from enum import StrEnum


class LaunchOutcome(StrEnum):
    """How a launch ended, as its callback saw it."""

    COMPLETED = "completed"
    DENIED = "denied"  # the user or the EHR did not grant access
    REFUSED = "refused"  # this app refused the callback: unknown or spent state, another browser, no code
    EXPIRED = "expired"  # the callback came after the launch's TTL
    FAILED = "failed"  # the EHR's answer could not be used (token exchange, id_token)


class SmartProblem(Exception):
    """Something the user can act on: the page shows ``title`` and ``message`` with ``status``."""

    def __init__(self, title: str, message: str, status: int = 400, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.title, self.message, self.status = title, message, status
        self.retry_after_s = retry_after_s

    @property
    def outcome(self) -> LaunchOutcome:
        """The launch's outcome when this ends a callback."""
        return LaunchOutcome.FAILED


class LaunchProblem(SmartProblem):
    def __init__(self, title: str, message: str, status: int = 400, *,
                 outcome: LaunchOutcome = LaunchOutcome.REFUSED, retry_after_s: int | None = None) -> None:
        super().__init__(title, message, status, retry_after_s=retry_after_s)
        self._outcome = outcome

    @property
    def outcome(self) -> LaunchOutcome:
        return self._outcome


class OAuthProblem(SmartProblem):
    """The EHR's OAuth answer (or its absence) leaves the app unable to go on."""


class ReviewProblem(SmartProblem):
    """The page cannot show an assessment (a verdict over data that could not be read would mislead)."""

"""The one error a notification channel raises."""

from __future__ import annotations

from app.errors import PunchclockError


class DeliveryError(PunchclockError):
    """A notification was not delivered. ``transient`` failures (connection errors, timeouts, HTTP 408/429/5xx,
    a service's rate limit, SMTP 4xx) are worth another attempt; the rest are not.

    The message never holds a secret (webhook path or token, SMTP password): channels scrub it before raising.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient

"""Which failures deserve another attempt, and how long to wait before it.

Pure: no clock and no randomness inside; callers pass ``now`` and ``jitter`` in.

    transient: retried with backoff                 permanent: the run fails at once
    ──────────────────────────────────────────     ──────────────────────────────────────────────
    TransientError (its retry_after honoured)       PermanentError, InvalidInput, ConfigurationError
    dramatiq.Retry (its delay honoured)             HTTP 4xx other than 408 / 429, and 1xx / 3xx
    HTTP 408, 429, 5xx (Retry-After honoured)       httpx.UnsupportedProtocol, httpx.InvalidURL
    httpx.TransportError (timeouts included)        ValueError, TypeError, LookupError (KeyError),
    OSError: ConnectionError, TimeoutError, …         AttributeError and other programming errors
    TimeLimitExceeded, when retry_timeouts          TimeLimitExceeded, unless retry_timeouts
    anything else: retried, as Dramatiq does

Unknown exceptions are transient: an actor's own failures (a flaky SDK's errors) are usually worth a retry, and
Dramatiq users expect it; raise :class:`PermanentError` to say otherwise.
Reasons name the exception type and HTTP status only, never the message or URL, which may carry secrets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from dramatiq.errors import Retry
from dramatiq.middleware import TimeLimitExceeded
from dramatiq.threading import Interrupt

from app.consumer_timeout import MAX_DELAY
from app.errors import ConfigurationError, InvalidInput, PunchclockError

# Dramatiq holds a delayed message unacknowledged on its delay queue until it is due, and RabbitMQ closes the
# channel of a consumer that holds a message past consumer_timeout: no retry waits longer than MAX_DELAY.
MAX_RETRY_DELAY_MS = MAX_DELAY // timedelta(milliseconds=1)
# 2**32 × any minimum backoff is past every cap; bounding the exponent keeps the arithmetic small.
_MAX_EXPONENT = 32
_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


class RunCancelled(Interrupt):
    """Raised inside an actor whose run ``punchclock runs cancel`` stopped. An Interrupt (a BaseException, like
    Dramatiq's TimeLimitExceeded), so an actor's own ``except Exception`` cannot swallow it; never retried."""


class RunSuperseded(Interrupt):
    """Raised inside an actor whose attempt is no longer its run's running attempt: its worker lost the database
    for longer than the lock TTL, the attempt was declared lost and the run taken over elsewhere. It stops, so
    the run never executes twice at once; its late finish is ignored. Never retried."""


class PermanentError(PunchclockError):
    """Raise it from an actor to fail the run at once: retrying cannot help (bad input, a missing resource)."""


class TransientError(PunchclockError):
    """Raise it from an actor to ask for a retry. ``retry_after`` (seconds) is the least wait the cause asked for
    (a service's Retry-After), or None for the schedule's backoff alone."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Validation and programming errors: the same input fails the same way on every attempt.
_PERMANENT_KINDS: tuple[type[BaseException], ...] = (
    PermanentError,
    InvalidInput,
    ConfigurationError,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NameError,
    NotImplementedError,
    AssertionError,
    ImportError,
    ArithmeticError,
)


@dataclass(frozen=True)
class Verdict:
    """``retry_after`` (seconds) is a wait the failure itself asked for; ``reason`` is safe to log and store."""

    transient: bool
    retry_after: float | None
    reason: str


def classify(exc: BaseException, *, retry_timeouts: bool, now: datetime | None = None) -> Verdict:
    """Transient or permanent, per the table in the module docstring. ``now`` (aware) anchors a Retry-After
    HTTP date when the response carries no Date header."""
    name = type(exc).__name__
    if isinstance(exc, RunCancelled):
        return Verdict(False, None, f"{name}: cancelled")
    if isinstance(exc, RunSuperseded):
        return Verdict(False, None, f"{name}: taken over by another attempt")
    if isinstance(exc, TransientError):
        return Verdict(True, exc.retry_after, name)
    if isinstance(exc, Retry):
        return Verdict(True, exc.delay / 1000 if exc.delay is not None else None, name)
    if isinstance(exc, TimeLimitExceeded):
        if retry_timeouts:
            return Verdict(True, None, f"{name}: timed out, retried as the schedule asks")
        return Verdict(False, None, f"{name}: timed out, and the schedule does not retry timeouts")
    if isinstance(exc, httpx.HTTPStatusError):
        return _classify_status(exc.response, now)
    # Before the transport errors: httpx.UnsupportedProtocol is one, and no retry fixes it.
    if isinstance(exc, _PERMANENT_KINDS):
        return Verdict(False, None, name)
    if isinstance(exc, httpx.TransportError | OSError):
        return Verdict(True, None, f"{name}: connection or timeout error")
    return Verdict(True, None, f"{name}: unclassified, retried")


def _classify_status(response: httpx.Response, now: datetime | None) -> Verdict:
    status = response.status_code
    reason = f"HTTPStatusError {status} {response.reason_phrase}".rstrip()
    if status in (408, 429) or 500 <= status <= 599:
        header = response.headers.get("Retry-After")
        date = response.headers.get("Date")
        anchor = _parse_http_date(date) if date is not None else None
        retry_after = retry_after_seconds(header, now=anchor or now) if header is not None else None
        return Verdict(True, retry_after, reason)
    return Verdict(False, None, reason)


def retry_after_seconds(value: str, *, now: datetime | None) -> float | None:
    """A ``Retry-After`` header in seconds from ``now``: either delay-seconds (``"120"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, which needs ``now``). A date in the past is 0; an unreadable value,
    or a date with no ``now``, is None (the schedule's backoff applies)."""
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    when = _parse_http_date(value)
    if when is None or now is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _parse_http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # HTTP dates are always GMT; "-0000" parses as naive.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def backoff_ms(retries: int, min_backoff_ms: int, max_backoff_ms: int, jitter: float) -> int:
    """The wait before retry number ``retries`` (0 for the first): ``min_backoff × 2ⁿ × (1 + jitter)``, capped at
    ``max_backoff``. ``jitter`` is a random draw in [0, 1) made by the caller, so this stays deterministic."""
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter={jitter}: must be in [0, 1)")
    if retries < 0:
        raise ValueError(f"retries={retries}: must be 0 or more")
    return min(max_backoff_ms, int(min_backoff_ms * 2 ** min(retries, _MAX_EXPONENT) * (1 + jitter)))


def retry_delay_ms(verdict: Verdict, retries: int, min_backoff_ms: int, max_backoff_ms: int, jitter: float) -> int:
    """The delay of the next attempt: the backoff, or the failure's ``retry_after`` when that is longer.

    A Retry-After may exceed ``max_backoff`` and wins over it: retrying sooner than a server asked only earns
    another 429. Nothing waits longer than :data:`MAX_RETRY_DELAY_MS`, under RabbitMQ's consumer_timeout.
    """
    delay = backoff_ms(retries, min_backoff_ms, max_backoff_ms, jitter)
    if verdict.retry_after is not None:
        delay = max(delay, math.ceil(verdict.retry_after * 1000))
    return min(delay, MAX_RETRY_DELAY_MS)

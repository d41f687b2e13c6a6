"""A source's own retries of one HTTP request: a few quick attempts before a document is reported Failed.

What is transient is :func:`app.transient.classify`'s answer (connection errors, timeouts, 408, 429, 5xx). The
wait before a retry is ``backoff`` (tenacity's wait), or the server's Retry-After when that is longer; a
Retry-After beyond ``max_retry_after`` ends the attempts at once: the next reindex is the retry, rather than a
worker asleep for a server that asked for minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential
from tenacity.wait import WaitBaseT

from app.errors import InvalidInput, PunchclockError
from app.transient import classify

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GaveUp(Exception):
    """The attempts ended in ``last``, after ``attempts`` of them (1 for a failure not worth a retry)."""

    def __init__(self, last: Exception, attempts: int) -> None:
        super().__init__(f"{type(last).__name__} after {attempts} attempt(s)")
        self.last = last
        self.attempts = attempts

    def reason(self) -> str:
        """Safe to log and store: the failure's type and HTTP status (see :func:`app.transient.classify`), and
        the message of our own errors, which never hold a URL or a header."""
        verdict = classify(self.last, retry_timeouts=True)
        mine = f": {self.last}" if isinstance(self.last, PunchclockError) else ""
        return f"{verdict.reason}{mine}, after {self.attempts} attempt(s)"

    @property
    def transient(self) -> bool:
        return classify(self.last, retry_timeouts=True).transient


@dataclass(frozen=True)
class Retries:
    """``attempts`` in all (1: no retry); ``backoff`` is tenacity's wait (tests pass ``wait_none()``)."""

    attempts: int = 3
    backoff: WaitBaseT = field(default=wait_exponential(multiplier=0.5, min=0.5, max=4))
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidInput(f"attempts={self.attempts}: must be 1 or more")
        if self.max_retry_after < 0:
            raise InvalidInput(f"max_retry_after={self.max_retry_after}: must be 0 or more seconds")

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()``, retried while it raises a transient failure; :class:`GaveUp` holds the last failure. ``what``
        names the request in the log (never a header: they may carry secrets)."""
        tries = 0
        try:
            async for attempt in AsyncRetrying(
                stop=self._stop,
                wait=self._wait,
                retry=retry_if_exception(lambda exc: classify(exc, retry_timeouts=True).transient),
                before_sleep=lambda state: _log_retry(what, state),
                reraise=True,
            ):
                with attempt:
                    tries += 1
                    return await call()
        except Exception as exc:
            raise GaveUp(exc, tries) from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    def _stop(self, state: RetryCallState) -> bool:
        retry_after = _retry_after(state)
        return state.attempt_number >= self.attempts or (retry_after or 0.0) > self.max_retry_after

    def _wait(self, state: RetryCallState) -> float:
        return max(self.backoff(state), _retry_after(state) or 0.0)


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return classify(exc, retry_timeouts=True).retry_after if exc is not None else None


def _log_retry(what: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    reason = classify(exc, retry_timeouts=True).reason if exc is not None else "no outcome"
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    logger.info("%s: attempt %d failed (%s), retrying in %.1f s", what, state.attempt_number, reason, wait)

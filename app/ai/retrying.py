"""The LLM client's own retries: a few quick attempts inside the step before the run's retries take over.

Only :class:`~app.ai.failures.AttemptFailed` failures that are transient are retried. The wait before retry n is
the schedule-style backoff (``min_wait × 2ⁿ × (1 + jitter)``, capped at ``max_wait``), or the server's
Retry-After when that is longer. A Retry-After beyond ``max_wait`` ends the attempts at once: the run's Dramatiq
retry, delayed by it, does the waiting instead of a worker.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from app.ai.failures import AttemptFailed
from app.transient import backoff_ms


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry inside the client); waits in seconds."""

    attempts: int = 3
    min_wait_seconds: float = 1.0
    max_wait_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts={self.attempts}: must be 1 or more")
        if not 0 <= self.min_wait_seconds <= self.max_wait_seconds:
            raise ValueError(
                f"min_wait_seconds={self.min_wait_seconds}, max_wait_seconds={self.max_wait_seconds}:"
                " need 0 <= min <= max"
            )

    def wait_seconds(self, retries: int, retry_after: float | None, jitter: float) -> float:
        """The wait before retry number ``retries`` (0 for the first); ``jitter`` is a draw in [0, 1)."""
        backoff = backoff_ms(retries, round(self.min_wait_seconds * 1000), round(self.max_wait_seconds * 1000), jitter)
        return max(backoff / 1000, retry_after or 0.0)

    def retrying(self, before_sleep: Callable[[RetryCallState], Awaitable[None] | None]) -> AsyncRetrying:
        """A tenacity loop for one call; ``before_sleep`` sees each retry (its outcome and ``next_action``)."""
        return AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, AttemptFailed) and exc.transient),
            stop=stop_any(stop_after_attempt(self.attempts), _RetryAfterBeyond(self.max_wait_seconds)),
            wait=self._wait,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        return self.wait_seconds(state.attempt_number - 1, _retry_after(state), random.random())


class _RetryAfterBeyond(stop_base):
    """Stop when the server asks for a longer wait than ``seconds``: the run's retry waits instead."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry_after = _retry_after(retry_state)
        return retry_after is not None and retry_after > self.seconds


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc.retry_after if isinstance(exc, AttemptFailed) else None

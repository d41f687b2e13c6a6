"""Telling a database outage from a bug, and waiting an outage out.

An outage ends by itself: the server restarting (``AdminShutdownError``, then ``CannotConnectNowError`` while it
recovers), refused connections (``OSError``), a connection cut in the middle of a statement
(``ConnectionDoesNotExistError``), a full server. What must be recorded — a run's start before its actor runs,
its end before its message is acknowledged — waits for the database to come back, retrying with capped
exponential backoff, rather than losing the record (``run_finish_unrecorded``) or burning the run's retries.
Anything else (a constraint violation, a bug in a query) is raised at once: waiting cannot fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import asyncpg
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

logger = logging.getLogger(__name__)
T = TypeVar("T")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, TimeoutError, socket errors
    asyncpg.PostgresConnectionError,  # class 08, and "connection was closed in the middle of operation"
    asyncpg.InterfaceError,  # "connection is closed", a pool being closed under us
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
)
# Between tries: 0.2 s, doubling, at most 5 s — a restarted server is seen within a few seconds of its return.
BACKOFF = wait_exponential(multiplier=0.2, max=5)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable for now, rather than that the statement is wrong."""
    return isinstance(exc, OUTAGE_ERRORS)


def wait_out(call: Callable[[], T], *, what: str, patience: timedelta, context: dict[str, object]) -> T:
    """``call()``, retried while it fails with an outage, for at most ``patience``; then the outage is raised.

    Each retry is logged (``database_outage_wait``, with ``what`` and ``context``) so that an operator sees
    what is waiting; the first success after a wait is logged as ``database_outage_over``.
    """
    try:  # the common case, without building a retry loop: the database is there
        return call()
    except Exception as exc:
        if not is_outage(exc):
            raise
        first = exc
    waited: list[float] = []

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        waited.append(delay)
        logger.warning(
            f"database unavailable: {what} waits for it",
            extra={
                "action": "database_outage_wait",
                **context,
                "try": state.attempt_number + 1,  # the first try was made before the loop
                "retry_in_s": round(delay, 2),
                "error": f"{type(error).__name__}: {error}",
            },
        )

    retrying = Retrying(
        retry=retry_if_exception(is_outage),
        wait=BACKOFF,
        stop=stop_after_delay(patience.total_seconds()),
        before_sleep=log_retry,
        reraise=True,
    )
    logger.warning(
        f"database unavailable: {what} waits for it",
        extra={"action": "database_outage_wait", **context, "try": 1, "error": f"{type(first).__name__}: {first}"},
    )
    result = retrying(call)
    if waited:
        logger.info(
            f"database back: {what} done",
            extra={"action": "database_outage_over", **context, "waited_s": round(sum(waited), 2)},
        )
    return result

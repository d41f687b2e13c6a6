"""Retries: retry transient failures with exponential backoff, fail permanent ones at once.

Replaces Dramatiq's ``Retries``, whose ``retry_when(retries, exception)`` predicate cannot see the message: with
it, a schedule's own ``max_retries`` (a message option) and a permanent/transient classification cannot both
apply, and its backoff ignores a server's ``Retry-After``. The classification and the delays are pure and live
in :mod:`app.transient`; this module only reads the options and acts.

Options, message first, then actor, then the constructor's default: ``max_retries``, ``min_backoff`` and
``max_backoff`` (milliseconds, as Dramatiq has them) and ``retry_timeouts`` (retry a ``TimeLimitExceeded``).

What it leaves on ``message.options`` for the middleware above it (``RunLifecycle``) and the dead letter:

- ``retries``: retries scheduled so far, one this attempt scheduled included (Dramatiq's key; an attempt
  starts as number ``retries + 1``);
- ``retry_delay_ms``: the delay (ms) of the retry this attempt scheduled; absent on any other outcome;
- ``traceback``: the failed attempt's traceback, as Dramatiq stores it;
- ``failure_reason``: set when the message fails: ``"permanent: HTTPStatusError 404 Not Found"`` or
  ``"retries exhausted after 3: HTTPStatusError 503 Service Unavailable"``.

A failed message is ``message.fail()``-ed: Dramatiq dead-letters it (the ``.XQ`` queue on RabbitMQ) and
``message.failed`` tells ``RunLifecycle`` a final failure from a ``retrying`` attempt.
"""

from __future__ import annotations

import logging
import random
import traceback
from datetime import UTC, datetime
from typing import Any

import dramatiq

from app.transient import Verdict, classify, retry_delay_ms

logger = logging.getLogger(__name__)


class Retries(dramatiq.Middleware):
    """``rng`` draws the backoff jitter; pass a seeded one in tests."""

    def __init__(
        self,
        *,
        max_retries: int = 3,
        min_backoff: int = 10_000,
        max_backoff: int = 300_000,
        retry_timeouts: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retry_timeouts = retry_timeouts
        self._rng = rng or random.Random()

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "min_backoff", "max_backoff", "retry_timeouts"}

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        message.options.pop("retry_delay_ms", None)  # the previous attempt's
        if exception is None:
            return
        actor = broker.actors.get(message.actor_name)
        actor_options = actor.options if actor is not None else {}

        def option(name: str, default: Any) -> Any:
            for value in (message.options.get(name), actor_options.get(name)):
                if value is not None:
                    return value
            return default

        verdict = classify(
            exception, retry_timeouts=bool(option("retry_timeouts", self.retry_timeouts)), now=datetime.now(UTC)
        )
        retries = int(message.options.get("retries", 0))
        max_retries = int(option("max_retries", self.max_retries))
        message.options["traceback"] = "".join(traceback.format_exception(exception, limit=30))
        if not verdict.transient:
            _fail(message, f"permanent: {verdict.reason}", "run_failed_permanently")
        elif retries >= max_retries:
            _fail(message, f"retries exhausted after {retries}: {verdict.reason}", "run_retries_exhausted")
        else:
            delay = retry_delay_ms(
                verdict,
                retries,
                int(option("min_backoff", self.min_backoff)),
                int(option("max_backoff", self.max_backoff)),
                self._rng.random(),
            )
            self._retry(broker, message, verdict, delay, retries + 1, max_retries)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """A skipped message (a finished run's redelivery, an overlap skip) is neither retried nor failed."""

    def _retry(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        verdict: Verdict,
        delay: int,
        retries: int,
        max_retries: int,
    ) -> None:
        message.options["retries"] = retries
        message.options["retry_delay_ms"] = delay
        try:
            # A copy of the message with the options above; Dramatiq's own Retries enqueues the proxy itself.
            broker.enqueue(message.copy(), delay=delay)
        except Exception as exc:
            # Acknowledging now would lose the run: dead-letter it instead, with the reason.
            message.options["retries"] = retries - 1
            del message.options["retry_delay_ms"]
            _fail(message, f"retry not scheduled: {type(exc).__name__}", "run_retry_unschedulable")
            return
        logger.info(
            "retry scheduled",
            extra={
                "action": "run_retry_scheduled",
                "run_id": message.options.get("run_id"),
                "message_id": message.message_id,
                "actor": message.actor_name,
                "retry": retries,
                "max_retries": max_retries,
                "delay_ms": delay,
                "reason": verdict.reason,
            },
        )


def _fail(message: dramatiq.MessageProxy, reason: str, action: str) -> None:
    message.fail()
    message.options["failure_reason"] = reason
    logger.warning(
        "run failed",
        extra={
            "action": action,
            "run_id": message.options.get("run_id"),
            "message_id": message.message_id,
            "actor": message.actor_name,
            "retries": message.options.get("retries", 0),
            "reason": reason,
        },
    )

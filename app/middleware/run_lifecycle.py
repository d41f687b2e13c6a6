"""RunLifecycle: record the start, end, attempts, error and output of every message that carries a run id,
under the run's overlap lease; then do what the end calls for (free a waiting run, notify, fire dependents).

Start and end are one database round trip each (``punchclock_start_run`` / ``punchclock_finish_run``). The
follow-ups cost round trips only when there is something to do.

Stack position: above Retries, because Dramatiq runs ``after_*`` hooks in reverse order: when ours runs,
Retries has decided whether the message will be retried (``message.failed`` is set when not) and how long it
waits (``retry_delay_ms``). A start is idempotent: a message for a finished run is acknowledged and dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import SkipMessage, TimeLimitExceeded
from dramatiq.middleware.middleware import MiddlewareError

from app.dependencies import fire_dependents
from app.errors import InvalidInput
from app.middleware.database import DatabasePool
from app.overlap import resolve_lease
from app.runs import FinishOutcome, RunState, fail_unstartable, finish_attempt, start_run
from app.tracing import current_trace_id, scrub_urls
from app.transient import RunCancelled

if TYPE_CHECKING:
    from app.db.pool import Pool

logger = logging.getLogger(__name__)

# A backfill run that finds its lease held waits this long and tries again, rather than being skipped.
BACKFILL_WAIT_MS = 1_000
FAILED_STATES = (RunState.FAILED, RunState.TIMED_OUT)


class RunStartFailed(MiddlewareError):
    """The database could not record a start: the message fails this attempt and Dramatiq retries it."""


# (pool, run id, event, notify targets) -> ids of the notifications created, sent by the ``notify`` actor
CreateNotifications = Callable[["Pool", int, str, list[str]], Any]


class RunLifecycle(dramatiq.Middleware):
    actor_options = {"lock_key"}  # noqa: RUF012 (Dramatiq's Middleware declares it a plain set)

    def __init__(
        self,
        database: DatabasePool,
        *,
        publish_pending: Callable[[Pool], Awaitable[int]],
        lock_ttl: timedelta,
        create_notifications: CreateNotifications,
        send_notification: Callable[[int], None],
    ) -> None:
        self.database = database
        self.publish_pending = publish_pending
        self.lock_ttl = lock_ttl
        self.create_notifications = create_notifications
        self.send_notification = send_notification

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run_id = message.options.get("run_id")
        if run_id is None:
            return
        actor = broker.get_actor(message.actor_name)
        try:
            lease = resolve_lease(message.options, actor.options.get("lock_key"), message.kwargs)
        except InvalidInput as exc:
            reason = str(exc)
            self.database.run(lambda pool: fail_unstartable(pool, run_id, reason))
            logger.error(reason, extra={"action": "run_failed", "run_id": run_id})
            raise SkipMessage() from None
        try:
            trace_id = current_trace_id()
            started = self.database.run_here(
                lambda conn: start_run(conn, run_id, lease.key, str(lease.policy), self.lock_ttl, trace_id)
            )
        except Exception as exc:
            raise RunStartFailed(f"could not record the start of run {run_id}: {exc}") from exc
        context = {"run_id": run_id, "actor": message.actor_name, "lock_key": lease.key, "holder": started.holder}
        if started.outcome == "started":
            logger.info("run started", extra={"action": "run_started", **context, "attempt": started.attempt})
            return
        if started.outcome == "wait":
            broker.enqueue(message.copy(), delay=BACKFILL_WAIT_MS)
            logger.info("backfill run waits for its lock", extra={"action": "run_waiting_lock", **context})
        elif started.outcome == "over":
            logger.info(
                "run already over or unknown: message dropped", extra={"action": "run_redelivery_ignored", **context}
            )
        else:  # skipped / queued
            logger.info(
                f"run {started.outcome}: lock held", extra={"action": f"run_{started.outcome}_overlap", **context}
            )
        raise SkipMessage()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        run_id = message.options.get("run_id")
        if run_id is None or isinstance(exception, RunStartFailed):
            return
        state, output, error = _attempt_end(message, result, exception)
        delay = message.options.get("retry_delay_ms") if state is RunState.RETRYING else None
        try:
            outcome = self.database.run_here(
                lambda conn: finish_attempt(conn, run_id, state, output=output, error=error, retry_delay_ms=delay)
            )
        except Exception as exc:
            logger.error(
                "could not record the end of a run",
                extra={"action": "run_finish_unrecorded", "run_id": run_id, "state": str(state), "error": str(exc)},
            )
            return
        logger.log(
            logging.INFO if state in (RunState.SUCCEEDED, RunState.RETRYING) else logging.WARNING,
            f"run {state}",
            extra={
                "action": f"run_{state}",
                "run_id": run_id,
                "actor": message.actor_name,
                "error": error,
                "retry_delay_ms": delay,
            },
        )
        if outcome is not None:
            self._follow_up(run_id, state, outcome)

    def _follow_up(self, run_id: int, state: RunState, outcome: FinishOutcome) -> None:
        """Free the run waiting on the lease, notify, fire dependents: only when one of them is due."""
        event = None
        if state in FAILED_STATES:
            event = "failure"
        elif state is RunState.SUCCEEDED and outcome.notify_on_recovery and outcome.previous_state in FAILED_STATES:
            event = "recovery"
        if not (outcome.released_waiting_run or outcome.has_dependents or (event and outcome.notify)):
            return

        async def follow_up(pool: Pool) -> list[int]:
            notifications: list[int] = []
            if event and outcome.notify:
                notifications = list(await self.create_notifications(pool, run_id, event, outcome.notify))
            if outcome.has_dependents:
                async with pool.acquire() as conn:
                    await fire_dependents(conn, run_id)
            if outcome.has_dependents or outcome.released_waiting_run:
                await self.publish_pending(pool)
            return notifications

        try:
            for notification_id in self.database.run(follow_up):
                self.send_notification(notification_id)
        except Exception as exc:  # the run's own state is recorded; the next tick publishes what is left
            logger.error(
                "follow-up of a finished run failed",
                extra={"action": "run_follow_up_failed", "run_id": run_id, "error": str(exc)},
            )


def _attempt_end(
    message: dramatiq.MessageProxy, result: Any, exception: BaseException | None
) -> tuple[RunState, Any, str | None]:
    """(state, output, error) of the attempt that just ended."""
    if exception is None:
        return RunState.SUCCEEDED, _jsonable(result), None
    # URLs in an error (httpx puts the request's in its messages) may carry tokens: stored redacted.
    error = scrub_urls(f"{type(exception).__name__}: {exception}".rstrip(": "))
    if isinstance(exception, RunCancelled):
        return RunState.CANCELLED, None, "cancelled by punchclock runs cancel"
    reason = message.options.get("failure_reason")
    if reason:
        error = f"{error} ({reason})"
    if not message.failed:
        return RunState.RETRYING, None, error
    if isinstance(exception, TimeLimitExceeded):
        limit = message.options.get("time_limit")
        return RunState.TIMED_OUT, None, f"timed out after {limit / 1000:g}s" if limit else error
    return RunState.FAILED, None, error


def _jsonable(result: Any) -> Any:
    """The actor's return value as run output; one JSON cannot hold is kept as its repr, not lost."""
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:2000], "note": "the actor returned a value that is not JSON"}
    return result

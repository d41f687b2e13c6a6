"""RunLifecycle: record the start, end, attempts, error and output of every message that carries a run id,
under the run's overlap lease; then do what the end calls for (free a waiting run, notify, fire dependents).

Start and end are one database round trip each (``punchclock_start_run`` / ``punchclock_finish_run``). The
follow-ups cost round trips only when there is something to do.

Delivery is at-least-once, execution is not: a message whose run is over is dropped; one whose run has an
attempt alive elsewhere (a redelivery after a broker blip, a re-publish by the sweep) is deferred — sent again,
delayed until that attempt should have ended — and dropped once it has. The start is recorded before the actor
runs and the end before the message is acknowledged; both wait out a database outage rather than lose the
record. Any failure of the start check skips the message: Dramatiq logs and swallows an exception raised in
``before_process_message`` and runs the actor anyway, so nothing but :class:`SkipMessage` may leave it.

Stack position: above Retries, because Dramatiq runs ``after_*`` hooks in reverse order: when ours runs,
Retries has decided whether the message will be retried (``message.failed`` is set when not) and how long it
waits (``retry_delay_ms``).

Message options it sets: ``attempt``, the attempt number the database gave this execution (actors and
workflows read it; a takeover after a crash counts one more than Dramatiq's ``retries`` would).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import SkipMessage, TimeLimitExceeded

from app.db.outage import is_outage, wait_out
from app.durations import format_duration
from app.followups import CreateNotifications, follow_up
from app.jsonb import jsonb_problem
from app.middleware.database import DatabasePool
from app.middleware.heartbeat import RunHeartbeat
from app.overlap import Lease, resolve_lease
from app.redaction import redact, redact_json
from app.runs import FinishOutcome, RunState, StartOutcome, fail_unstartable, finish_attempt, start_run
from app.tracing import current_trace_id
from app.transient import MAX_RETRY_DELAY_MS, RunCancelled, RunSuperseded

if TYPE_CHECKING:
    from app.db.pool import Pool

logger = logging.getLogger(__name__)

# A backfill run that finds its lease held waits this long and tries again, rather than being skipped.
BACKFILL_WAIT_MS = 1_000
# The message option a backfill run's re-sent message carries while it waits for its lease: when it started
# waiting (epoch ms). Its wait is logged twice, when it starts and when it ends, not once per try: hundreds of
# backfill runs waiting would otherwise log hundreds of lines a second.
WAITING_SINCE = "lease_waiting_since"
# A duplicate comes back this long after the live attempt's heartbeat would have expired, so that a takeover
# (its worker died) happens as soon as it may; never later than RabbitMQ's consumer_timeout allows.
DEFER_MARGIN_MS = 500
# How long a start waits for the database before the message is deferred (sent again later) instead: a worker
# thread can do nothing useful meanwhile, and the message stays unacknowledged, so a crash loses nothing.
START_PATIENCE = timedelta(minutes=2)
DEFER_WHILE_DATABASE_DOWN_MS = 30_000
# How long an end waits for the database before giving up (``run_finish_unrecorded``): under RabbitMQ's
# consumer_timeout, which would redeliver the message behind our back. A run whose end went unrecorded is
# recovered by the sweep (its attempt is lost once its heartbeat expires).
FINISH_PATIENCE = timedelta(minutes=20)


class RunLifecycle(dramatiq.Middleware):
    actor_options = {"lock_key"}  # noqa: RUF012 (Dramatiq's Middleware declares it a plain set)

    def __init__(
        self,
        database: DatabasePool,
        heartbeat: RunHeartbeat,
        *,
        publish_pending: Callable[[Pool], Awaitable[int]],
        lock_ttl: timedelta,
        create_notifications: CreateNotifications,
        send_notification: Callable[[int], None],
    ) -> None:
        self.database = database
        self.heartbeat = heartbeat
        self.publish_pending = publish_pending
        self.lock_ttl = lock_ttl
        self.create_notifications = create_notifications
        self.send_notification = send_notification

    # the start -------------------------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run_id = message.options.get("run_id")
        if run_id is None:
            return
        try:
            self._start(broker, message, run_id)
        except SkipMessage:
            raise
        except Exception as exc:
            reason = redact(f"the start check failed: {type(exc).__name__}: {exc}".rstrip(": "))
            self._fail_unstartable(run_id, reason)
            raise SkipMessage() from None

    def _start(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, run_id: Any) -> None:
        if not isinstance(run_id, int) or isinstance(run_id, bool):
            raise ValueError(f"run_id {run_id!r} is not a run id")
        actor = broker.get_actor(message.actor_name)
        lease = resolve_lease(message.options, actor.options.get("lock_key"), message.kwargs)
        trace_id = current_trace_id()
        try:
            started = wait_out(
                lambda: self.database.run_here(
                    lambda conn: start_run(conn, run_id, lease.key, str(lease.policy), self.lock_ttl, trace_id)
                ),
                what="the start of a run",
                patience=START_PATIENCE,
                context={"run_id": run_id},
            )
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._defer(broker, message, DEFER_WHILE_DATABASE_DOWN_MS, "run_start_deferred", {"run_id": run_id})
            raise SkipMessage() from None
        self._act_on(broker, message, run_id, lease, started)

    def _act_on(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, run_id: int, lease: Lease, started: StartOutcome
    ) -> None:
        context = {"run_id": run_id, "actor": message.actor_name, "lock_key": lease.key, "holder": started.holder}
        if started.started:
            assert started.attempt is not None
            message.options["attempt"] = started.attempt
            self.heartbeat.track(run_id, started.attempt)
            waiting_since = message.options.pop(WAITING_SINCE, None)
            if waiting_since is not None:
                logger.info(
                    "run got its lease after waiting",
                    extra={"action": "run_lease_acquired", **context, "waited_ms": _now_ms() - waiting_since},
                )
            if started.outcome == "took_over":
                logger.warning(
                    "the previous attempt's worker stopped heartbeating: attempt lost, run taken over",
                    extra={"action": "run_taken_over", **context, "attempt": started.attempt},
                )
            logger.info("run started", extra={"action": "run_started", **context, "attempt": started.attempt})
            return
        if started.outcome in ("busy", "early"):
            # A duplicate: look again once the live attempt should be over (or the retry is due).
            delay = (started.wait_ms or 0) + DEFER_MARGIN_MS
            self._defer(
                broker, message, delay, f"run_duplicate_{started.outcome}", {**context, "live": started.attempt}
            )
        elif started.outcome == "wait":
            first = WAITING_SINCE not in message.options
            if first:
                logger.info(
                    "run waiting for its lease or an earlier instant of its backfill",
                    extra={"action": "run_waiting_lock", **context},
                )
            self._defer(
                broker,
                message,
                BACKFILL_WAIT_MS,
                "run_waiting_lock_retry",
                context,
                options={WAITING_SINCE: _now_ms() if first else message.options[WAITING_SINCE]},
                level=logging.DEBUG,
            )
        elif started.outcome == "over":
            logger.info(
                "run already over or unknown: message dropped", extra={"action": "run_redelivery_ignored", **context}
            )
        else:  # skipped / queued
            logger.info(
                f"run {started.outcome}: lock held", extra={"action": f"run_{started.outcome}_overlap", **context}
            )
        raise SkipMessage()

    def _defer(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        delay_ms: int,
        action: str,
        context: dict[str, Any],
        *,
        options: dict[str, Any] | None = None,
        level: int = logging.INFO,
    ) -> None:
        """Send ``message`` again in ``delay_ms``, with ``options`` added (this delivery is then acknowledged and
        dropped). If the broker refuses, this delivery's acknowledgement cannot reach it either, so the broker
        redelivers it; and a run left ``enqueued`` with no message is re-published by the sweep."""
        delay_ms = max(1, min(delay_ms, MAX_RETRY_DELAY_MS))
        try:
            broker.enqueue(message.copy(options=options or {}), delay=delay_ms)
        except Exception as exc:
            logger.error(
                "could not defer a message: the broker or the sweep sends it again",
                extra={"action": "run_defer_failed", **context, "error": str(exc)},
            )
            return
        logger.log(level, "message deferred", extra={"action": action, **context, "delay_ms": delay_ms})

    def _fail_unstartable(self, run_id: Any, reason: str) -> None:
        """Record why a message could not start its run (a run not running yet fails with that reason); the
        message is skipped whatever happens here."""
        logger.error(reason, extra={"action": "run_start_refused", "run_id": run_id})
        if not isinstance(run_id, int) or isinstance(run_id, bool):
            return
        try:
            self.database.run(lambda pool: fail_unstartable(pool, run_id, reason))
        except Exception as exc:  # out of range, database away: the log line above is the record
            logger.error(
                "could not record why a run could not start",
                extra={"action": "run_start_refusal_unrecorded", "run_id": run_id, "error": str(exc)},
            )

    # the end ---------------------------------------------------------------------------------------------

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        run_id = message.options.get("run_id")
        attempt = message.options.get("attempt")
        if run_id is None or attempt is None:
            return
        self.heartbeat.untrack(run_id)
        state, output, error = _attempt_end(message, result, exception)
        delay = message.options.get("retry_delay_ms") if state is RunState.RETRYING else None
        context = {"run_id": run_id, "attempt": attempt, "state": str(state)}
        try:
            outcome = wait_out(
                lambda: self.database.run_here(
                    lambda conn: finish_attempt(
                        conn, run_id, state, attempt=attempt, output=output, error=error, retry_delay_ms=delay
                    )
                ),
                what="the end of a run",
                patience=FINISH_PATIENCE,
                context=context,
            )
        except Exception as exc:
            logger.error(
                "could not record the end of a run: the sweep recovers it once its heartbeat expires",
                extra={"action": "run_finish_unrecorded", **context, "error": str(exc)},
            )
            return
        if outcome is None:
            logger.warning(
                "the attempt was no longer the run's running one: its end is not recorded",
                extra={"action": "run_finish_superseded", **context},
            )
            return
        logger.log(
            logging.INFO if state in (RunState.SUCCEEDED, RunState.RETRYING) else logging.WARNING,
            f"run {state}",
            extra={
                "action": f"run_{state}",
                **context,
                "actor": message.actor_name,
                "error": error,
                "retry_delay_ms": delay,
            },
        )
        self._follow_up(run_id, outcome)

    def _follow_up(self, run_id: int, outcome: FinishOutcome) -> None:
        """Do the follow-ups marked due with the run's end, publish the runs they (or the freed lease) made
        ready, send the notifications. A failure here loses nothing: the sweep finds what is left."""
        if not (outcome.followups_due or outcome.released_waiting_run):
            return

        async def work(pool: Pool) -> list[int]:
            notifications = await follow_up(pool, run_id, self.create_notifications) if outcome.followups_due else []
            if outcome.has_dependents or outcome.released_waiting_run:
                await self.publish_pending(pool)
            return notifications

        try:
            for notification_id in self.database.run(work):
                self.send_notification(notification_id)
        except Exception as exc:
            logger.error(
                "follow-up of a finished run failed: the tick's sweep does what is left",
                extra={"action": "run_follow_up_failed", "run_id": run_id, "error": str(exc)},
            )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _attempt_end(
    message: dramatiq.MessageProxy, result: Any, exception: BaseException | None
) -> tuple[RunState, Any, str | None]:
    """(state, output, error) of the attempt that just ended; the error redacted (URLs in it carry tokens:
    httpx puts the request's in its messages), the output with known secrets masked."""
    if exception is None:
        return RunState.SUCCEEDED, _jsonable(result), None
    error = f"{type(exception).__name__}: {exception}".rstrip(": ")
    if isinstance(exception, RunCancelled):
        return RunState.CANCELLED, None, "cancelled by punchclock runs cancel"
    if isinstance(exception, RunSuperseded):  # its end is not recorded: the finish is fenced by attempt
        return RunState.CANCELLED, None, "stopped: the attempt was declared lost and the run taken over"
    reason = message.options.get("failure_reason")
    if reason:
        error = f"{error} ({reason})"
    error = redact(error)
    if not message.failed:
        return RunState.RETRYING, None, error
    if isinstance(exception, TimeLimitExceeded):
        limit = message.options.get("time_limit")
        return (
            RunState.TIMED_OUT,
            None,
            f"timed out after {format_duration(timedelta(milliseconds=limit))}" if limit else error,
        )
    return RunState.FAILED, None, error


def _jsonable(result: Any) -> Any:
    """The actor's return value as run output, known secrets masked (:func:`app.redaction.redact_json`: an
    output's own links stay); one JSON cannot hold is kept as its repr, redacted as text, not lost."""
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": redact(repr(result)[:2000]), "note": "the actor returned a value that is not JSON"}
    problem = jsonb_problem(result, "output")  # NaN, "\u0000": JSON to Python, refused by PostgreSQL's jsonb
    if problem is not None:
        return {"repr": redact(repr(result)[:2000]), "note": f"the actor returned a value jsonb cannot hold: {problem}"}
    return redact_json(result)

"""RunLifecycle: record the start, end, attempts, error and output of every message that carries a run id.

Must come before ``Retries`` in the stack: Dramatiq runs ``after_*`` hooks in reverse order, so by the time
ours runs, ``Retries`` has decided whether the message will be retried (``message.failed`` is set when not).
The start is idempotent: a redelivered message for a finished run is acknowledged and skipped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage, TimeLimitExceeded
from dramatiq.middleware.middleware import MiddlewareError

from app.middleware.database import DatabasePool
from app.runs import RunState, finish_attempt, start_run

logger = logging.getLogger(__name__)


class RunStartFailed(MiddlewareError):
    """The database could not record a start: the message fails this attempt and Dramatiq retries it."""


class RunLifecycle(dramatiq.Middleware):
    def __init__(self, database: DatabasePool) -> None:
        self.database = database

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run_id = message.options.get("run_id")
        if run_id is None:
            return
        try:
            attempt = self.database.run(lambda pool: start_run(pool, run_id))
        except Exception as exc:
            raise RunStartFailed(f"could not record the start of run {run_id}: {exc}") from exc
        if attempt is None:
            logger.info(
                "run already over or unknown: redelivery ignored",
                extra={"action": "run_redelivery_ignored", "run_id": run_id, "message_id": message.message_id},
            )
            raise SkipMessage()
        logger.info(
            "run started",
            extra={"action": "run_started", "run_id": run_id, "actor": message.actor_name, "attempt": attempt},
        )

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
        if exception is None:
            state, output, error = RunState.SUCCEEDED, _jsonable(result), None
        else:
            error = f"{type(exception).__name__}: {exception}"
            output = None
            if not message.failed:
                state = RunState.RETRYING
            elif isinstance(exception, TimeLimitExceeded):
                state = RunState.TIMED_OUT
            else:
                state = RunState.FAILED
        try:
            self.database.run(lambda pool: finish_attempt(pool, run_id, state, output=output, error=error))
        except Exception as exc:
            logger.error(
                "could not record the end of a run",
                extra={"action": "run_finish_unrecorded", "run_id": run_id, "state": str(state), "error": str(exc)},
            )
            return
        logger.log(
            logging.INFO if state is RunState.SUCCEEDED else logging.WARNING,
            f"run {state}",
            extra={"action": f"run_{state}", "run_id": run_id, "actor": message.actor_name, "error": error},
        )


def _jsonable(result: Any) -> Any:
    """The actor's return value as run output; one JSON cannot hold is kept as its repr, not lost."""
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:2000], "note": "the actor returned a value that is not JSON"}
    return result

"""Runs: the state machine and the run rows.

::

    scheduled ──publish──▶ enqueued ──start──▶ running ──▶ succeeded | failed | timed_out | cancelled
                                                  │  ▲
                                        attempt ──┘  └── retrying (Dramatiq re-delivers after a backoff)
    missed: a cron instant the misfire policy did not fire     skipped / awaiting_approval: the worker side

A redelivered message for a run that is over does nothing; one for a run still ``running`` is a crash
redelivery (the worker holding it died) and starts a new attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import asyncpg

from app.db.queries import sql
from app.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from app.db.pool import Connection, Executor


class RunState(StrEnum):
    SCHEDULED = "scheduled"
    ENQUEUED = "enqueued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    MISSED = "missed"
    AWAITING_APPROVAL = "awaiting_approval"


FINISHED = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED, RunState.SKIPPED, RunState.MISSED}
)


def parse_state(text: str) -> RunState:
    try:
        return RunState(text)
    except ValueError:
        raise InvalidInput(f'unknown run state "{text}": use one of {", ".join(s.value for s in RunState)}') from None


@dataclass(frozen=True)
class Run:
    id: int
    schedule_id: int | None
    schedule_name: str | None
    actor: str
    args: dict[str, Any]
    options: dict[str, Any]
    scheduled_for: datetime
    trigger: str
    state: RunState
    attempts: int
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    output: Any
    trace_id: str | None
    blocked_by: int | None = None
    delay_ms: int = 0
    next_attempt_at: datetime | None = None
    cancel_requested: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Run:
        values = dict(row)
        values["state"] = RunState(values["state"])
        return cls(**values)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


async def get_run(conn: Connection, run_id: int) -> Run:
    row = await conn.fetchrow(sql("get_run"), run_id)
    if row is None:
        raise NotFound(f"no run with id {run_id}: see punchclock runs list")
    return Run.from_row(row)


async def list_runs(conn: Connection, *, schedule: str | None, state: RunState | None, limit: int) -> list[Run]:
    if limit < 1:
        raise InvalidInput(f"invalid --limit {limit}: must be 1 or more")
    rows = await conn.fetch(sql("list_runs"), schedule, None if state is None else str(state), limit)
    return [Run.from_row(row) for row in rows]


async def start_run(conn: Executor, run_id: int) -> int | None:
    """Begin an attempt; the attempt number, or None when the run is over (or unknown): do not run it."""
    attempts: int | None = await conn.fetchval(sql("start_run"), run_id)
    return attempts


async def finish_attempt(
    conn: Executor, run_id: int, state: RunState, *, output: Any = None, error: str | None = None
) -> None:
    await conn.execute(sql("finish_run"), run_id, str(state), output, error)

"""Runs: the state machine and the run rows.

::

    scheduled ──publish──▶ enqueued ──start──▶ running ──▶ succeeded | failed | timed_out | cancelled
        ▲                                         │  ▲
        │                               attempt ──┘  └── retrying (Dramatiq re-delivers after a backoff)
        └──── attempt lost (its worker stopped heartbeating): back to the outbox, or failed when no retry is left
    missed: a cron instant the misfire policy did not fire     skipped / awaiting_approval: the worker side

Delivery is at-least-once; execution is not. A message for a run that is over does nothing. One for a run
whose attempt is still alive (``alive_until`` in the future, renewed by its worker's heartbeat) is a duplicate
(a redelivery after a broker blip, a re-publish by the sweep): it waits and is dropped once that attempt has
finished. Only an attempt that stopped proving it is alive is taken over, recorded ``lost``. A finish names its
attempt, so the late finish of a lost attempt changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
    input_tokens: int = 0
    output_tokens: int = 0
    alive_until: datetime | None = None
    followups_due: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Run:
        values = dict(row)
        values["state"] = RunState(values["state"])
        return cls(**values)


async def get_run(conn: Connection, run_id: int) -> Run:
    row = await conn.fetchrow(sql("get_run"), run_id)
    if row is None:
        raise NotFound(f"no run with id {run_id}: see punchclock runs list")
    return Run.from_row(row)


async def list_runs(conn: Connection, *, schedule: str | None, state: RunState | None, limit: int) -> list[Run]:
    if limit < 1:
        raise InvalidInput(f"invalid --limit {limit}: must be 1 or more")
    state_name = None if state is None else str(state)
    if schedule is None:
        rows = await conn.fetch(sql("list_runs"), state_name, limit)
    else:
        rows = await conn.fetch(sql("list_schedule_runs"), schedule, state_name, limit)
    return [Run.from_row(row) for row in rows]


@dataclass(frozen=True)
class StartOutcome:
    """What ``punchclock_start_run`` decided (migration 0005 lists the outcomes): started or took_over (with
    the attempt number), over, busy or early (look again in ``wait_ms``), skipped, queued, wait."""

    outcome: str
    attempt: int | None
    holder: int | None
    wait_ms: int | None = None

    @property
    def started(self) -> bool:
        return self.outcome in ("started", "took_over")


@dataclass(frozen=True)
class FinishOutcome:
    """What the worker does after an attempt ends: publish a released waiting run or the dependents it made
    ready, do the follow-ups (notifications, dependents) marked due with the run's end."""

    released_waiting_run: int | None
    has_dependents: bool
    followups_due: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> FinishOutcome:
        return cls(row["released_waiting_run"], bool(row["has_dependents"]), bool(row["followups_due"]))


async def start_run(
    conn: Executor, run_id: int, lock_key: str | None, policy: str, lock_ttl: timedelta, trace_id: str | None = None
) -> StartOutcome:
    """Start an attempt under the lease ``lock_key`` (None: no lease). One round trip."""
    row = await conn.fetchrow(sql("start_run"), run_id, lock_key, policy, lock_ttl, trace_id)
    assert row is not None
    return StartOutcome(row["outcome"], row["attempt"], row["holder"], row["wait_ms"])


async def finish_attempt(
    conn: Executor,
    run_id: int,
    state: RunState,
    *,
    attempt: int | None = None,
    output: Any = None,
    error: str | None = None,
    retry_delay_ms: int | None = None,
) -> FinishOutcome | None:
    """End attempt ``attempt`` (None: whichever is running); None when it was not the running one (a late
    duplicate, or an attempt declared lost meanwhile). One round trip."""
    row = await conn.fetchrow(sql("finish_run"), run_id, attempt, str(state), output, error, retry_delay_ms)
    return None if row is None else FinishOutcome.from_row(row)


async def fail_unstartable(conn: Executor, run_id: int, error: str) -> None:
    await conn.execute(sql("fail_unstartable_run"), run_id, error)


# The CLI's view of a run: its attempts and notifications, cancel and retry ----------------------------------

CANCELLED_BY_CLI = "cancelled by punchclock runs cancel"


@dataclass(frozen=True)
class RunAttempt:
    """One attempt of a run; ``retry_delay_ms`` is the backoff chosen before the next attempt, if any."""

    attempt: int
    state: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    retry_delay_ms: int | None

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True)
class RunNotification:
    """A notification about a run, to one target (its secret part masked)."""

    target: str
    event: str
    state: str
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class RunStep:
    """One step of an attempt of a workflow run (``ctx.step(name)``): its timing, outcome and tokens."""

    attempt: int
    seq: int
    name: str
    started_at: datetime
    finished_at: datetime
    status: str
    error: str | None
    input_tokens: int
    output_tokens: int

    @property
    def duration(self) -> timedelta:
        return self.finished_at - self.started_at


async def list_steps(conn: Connection, run_id: int) -> list[RunStep]:
    return [RunStep(**dict(row)) for row in await conn.fetch(sql("cli_run_steps"), run_id)]


async def list_attempts(conn: Connection, run_id: int) -> list[RunAttempt]:
    return [RunAttempt(**dict(row)) for row in await conn.fetch(sql("cli_run_attempts"), run_id)]


async def list_notifications(conn: Connection, run_id: int) -> list[RunNotification]:
    return [RunNotification(**dict(row)) for row in await conn.fetch(sql("cli_run_notifications"), run_id)]


async def get_runs(conn: Connection, run_ids: list[int]) -> list[Run]:
    """The runs with these ids that exist, oldest first."""
    return [Run.from_row(row) for row in await conn.fetch(sql("cli_get_runs"), run_ids)]


async def cancel_run(conn: Connection, run_id: int) -> Run:
    """Cancel a run not started yet (now ``cancelled``), or ask a running one to stop (``cancel_requested``:
    its worker stops it and marks it ``cancelled``); a running run whose worker stopped heartbeating is
    cancelled at once. :class:`InvalidInput` if it is over, :class:`NotFound` if
    there is no such run."""
    row = await conn.fetchrow(sql("cli_cancel_run"), run_id, CANCELLED_BY_CLI)
    if row is not None:
        # Running, but its worker is gone: nobody is left to stop it, so it is cancelled here and now.
        if row["state"] == RunState.RUNNING and await conn.fetchval(sql("cancel_dead_run"), run_id):
            return await get_run(conn, run_id)
        return Run.from_row(row)
    run = await get_run(conn, run_id)
    if run.state in FINISHED:
        raise InvalidInput(f"run {run_id} is already {run.state}: there is nothing to cancel")
    raise InvalidInput(
        f"run {run_id} is {run.state}: only a scheduled, enqueued, retrying or running run can be cancelled"
    )


# The states a run can be cancelled in: not started yet (the first three), or running.
CANCELLABLE = (RunState.SCHEDULED, RunState.ENQUEUED, RunState.RETRYING, RunState.RUNNING)


def cancellable_states(texts: list[str] | None) -> tuple[RunState, ...]:
    """The states named (all cancellable ones when None), each one a run can be cancelled in."""
    if not texts:
        return CANCELLABLE
    states = tuple(dict.fromkeys(parse_state(text) for text in texts))
    for state in states:
        if state not in CANCELLABLE:
            raise InvalidInput(
                f"invalid --state {state}: a {state} run cannot be cancelled; use {', '.join(CANCELLABLE)}"
            )
    return states


@dataclass(frozen=True)
class Pending:
    """A schedule's runs not over yet: ``not_started`` (scheduled, enqueued or retrying) and ``running``."""

    not_started: int = 0
    running: int = 0

    @property
    def total(self) -> int:
        return self.not_started + self.running


async def count_pending(conn: Connection, schedule: str, states: tuple[RunState, ...] = CANCELLABLE) -> Pending:
    counts = {
        row["state"]: row["runs"]
        for row in await conn.fetch(sql("cli_count_pending_runs"), schedule, [str(s) for s in states])
    }
    running = counts.pop(RunState.RUNNING, 0)
    return Pending(not_started=sum(counts.values()), running=running)


async def schedule_known(conn: Connection, name: str) -> bool:
    """Whether ``name`` is a schedule's, or was: runs keep their schedule's name once it is deleted."""
    known: bool = await conn.fetchval(sql("cli_schedule_known"), name)
    return known


async def cancel_schedule_runs(conn: Connection, schedule: str, states: tuple[RunState, ...] = CANCELLABLE) -> Pending:
    """:func:`cancel_run` for each run of ``schedule`` (by name: a deleted one's too) in ``states``: what was
    done, ``not_started`` runs cancelled (a running one whose worker is gone among them) and ``running`` ones
    asked to stop."""
    rows = await conn.fetch(sql("cli_cancel_schedule_runs"), schedule, [str(s) for s in states], CANCELLED_BY_CLI)
    running = [row["id"] for row in rows if row["state"] == RunState.RUNNING]
    # Running, but its worker is gone: nobody is left to stop it, so it is cancelled here and now.
    dead = [run_id for run_id in running if await conn.fetchval(sql("cancel_dead_run"), run_id)]
    return Pending(not_started=len(rows) - len(running) + len(dead), running=len(running) - len(dead))


async def retry_run(conn: Connection, run_id: int) -> Run:
    """Record a new manual run with the schedule, actor, args and options of run ``run_id`` (state
    ``scheduled``: the caller publishes it through the outbox). Works when the schedule was deleted."""
    row = await conn.fetchrow(sql("cli_retry_run"), run_id)
    if row is None:
        raise NotFound(f"no run with id {run_id}: see punchclock runs list")
    return Run.from_row(row)

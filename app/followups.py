"""A finished run's follow-ups: notify on a final failure or timeout (and on a recovery, when asked), and fire the
schedules that run after it.

They are an outbox. ``punchclock_finish_run`` marks them due (``runs.followups_due``) in the very statement that
records the run's end, so no crash can separate the two. The worker that finished the run then does them at
once (:func:`follow_up`); the tick's recovery sweep does whatever a crash or an outage left behind. Doing them
twice is harmless: notifications are created once per (run, event), dependent runs once per (schedule, instant),
and the flag is cleared in the transaction that creates them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from app.db.queries import sql
from app.dependencies import fire_dependents

if TYPE_CHECKING:
    from app.db.pool import Connection, Pool

FAILED_STATES = ("failed", "timed_out")

# (connection, run id, event, notify targets) -> ids of the notifications created
CreateNotifications = Callable[["Connection", int, str, Sequence[str]], Awaitable[list[int]]]


def followup_event(state: str, previous_state: str | None, notify_on_recovery: bool) -> str | None:
    """The notification event a run's end calls for: ``failure`` after a final failure or timeout, ``recovery``
    after the first success following one (when the schedule asks), else None."""
    if state in FAILED_STATES:
        return "failure"
    if state == "succeeded" and notify_on_recovery and previous_state in FAILED_STATES:
        return "recovery"
    return None


async def follow_up(pool: Pool, run_id: int, create_notifications: CreateNotifications) -> list[int]:
    """Do run ``run_id``'s due follow-ups in one transaction: its notifications (created ``pending``) and its
    dependents' runs (left in the outbox). Returns the ids of the notifications to send; empty when nothing was
    due (or another worker or sweep did it first)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql("claim_followups"), run_id)
        if row is None:
            return []
        notifications: list[int] = []
        event = followup_event(row["state"], row["previous_state"], row["notify_on_recovery"])
        if event is not None and row["notify"]:
            notifications = await create_notifications(conn, run_id, event, list(row["notify"]))
        if row["state"] == "succeeded":
            await fire_dependents(conn, run_id)
        return notifications

"""The recovery sweep: every tick, after firing, whatever a crash or an outage left behind is moved on, so that
every run and attempt reaches a final state.

::

    running, alive_until passed        attempt lost → cancelled (cancel was asked), failed (no retry left),
    (its worker died, or lost the        or back to the outbox for its next attempt
     database longer than the TTL)
    enqueued / retrying, its message   back to the outbox: a message that was only slow becomes a duplicate,
    overdue by ``republish_after``      which the start check absorbs (a run starts once)
    follow-ups due FOLLOWUP_GRACE ago   done here (notifications created, dependents fired)
    notification pending NOTIFY_GRACE   sent again (a delivery in progress holds a claim, so none is sent twice
                                        at once)
    final run past the retention        deleted with its attempts, steps and notifications: one batch of
                                        ``SWEEP_BATCH`` per tick (app/retention.py), when retention is on;
                                        :func:`prune`, which the tick calls after publishing

Each step handles at most ``batch`` rows per tick (SKIP LOCKED, so concurrent ticks take disjoint rows); what
is left waits for the next tick. The outbox itself (``scheduled`` runs) is published by the tick right after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from app.db.queries import sql
from app.followups import CreateNotifications, follow_up
from app.retention import SWEEP_BATCH, prune_batch, sweep_cutoff

if TYPE_CHECKING:
    from app.db.pool import Pool

logger = logging.getLogger(__name__)

# The worker that finished a run does its follow-ups within milliseconds; past this they were left behind.
FOLLOWUP_GRACE = timedelta(seconds=30)
# A notification's delivery (3 tries, backoff up to 10 s, each try bounded) is over well within this.
NOTIFY_GRACE = timedelta(minutes=1)


@dataclass(frozen=True)
class Sweep:
    """What the sweep needs from the wiring: how long a run's message may be overdue before it is re-published,
    how notifications are created and sent, and how long finished runs are kept (None: forever)."""

    republish_after: timedelta
    create_notifications: CreateNotifications
    send_notification: Callable[[int], None]
    retention: timedelta | None = None


@dataclass
class SweepReport:
    recovered: dict[str, int] = field(default_factory=dict)  # lost attempts: new run state -> count
    republished: int = 0
    followups: int = 0
    notifications: int = 0


async def sweep(pool: Pool, config: Sweep, *, batch: int) -> SweepReport:
    """One pass over what a crash or an outage may have left behind (see the module docstring)."""
    report = SweepReport()
    for row in await pool.fetch(sql("recover_lost_runs"), batch):
        report.recovered[row["state"]] = report.recovered.get(row["state"], 0) + 1
        logger.warning(
            "attempt lost: its worker stopped heartbeating",
            extra={"action": "run_attempt_lost", "run_id": row["run_id"], "state": row["state"]},
        )
    for row in await pool.fetch(sql("republish_stale_runs"), config.republish_after, batch):
        report.republished += 1
        logger.warning(
            f"run {row['was']} with no message seen for {config.republish_after}: re-published",
            extra={"action": "run_republished", "run_id": row["id"], "was": row["was"]},
        )
    notifications: list[int] = []
    for row in await pool.fetch(sql("overdue_followups"), FOLLOWUP_GRACE, batch):
        notifications += await follow_up(pool, row["id"], config.create_notifications)
        report.followups += 1
        logger.warning(
            "follow-ups of a finished run were left behind: done by the sweep",
            extra={"action": "run_follow_up_recovered", "run_id": row["id"]},
        )
    overdue = [row["id"] for row in await pool.fetch(sql("overdue_notifications"), NOTIFY_GRACE, batch)]
    for notification_id in overdue:
        logger.warning(
            "notification still pending: sent again",
            extra={"action": "notification_resent", "notification_id": notification_id},
        )
    report.notifications = len(overdue)
    if notifications or overdue:
        # Publishing blocks on the broker (pika): off the event loop the pool lives on.
        await asyncio.to_thread(_send_all, config.send_notification, [*notifications, *overdue])
    return report


async def prune(pool: Pool, config: Sweep) -> int:
    """One batch of runs past the retention (its own transaction: it never holds locks across the sweep); none
    when retention is off. The tick calls it after publishing, so a batch never delays a fire."""
    if config.retention is None:
        return 0
    cutoff = sweep_cutoff(await pool.fetchval(sql("db_now")), config.retention)
    pruned = (await prune_batch(pool, cutoff, SWEEP_BATCH)).deleted
    if pruned:
        logger.info(
            "runs past the retention pruned",
            extra={"action": "runs_pruned", "runs": pruned, "before": cutoff.isoformat(), "by": "sweep"},
        )
    return pruned


def _send_all(send: Callable[[int], None], notification_ids: list[int]) -> None:
    for notification_id in notification_ids:
        send(notification_id)

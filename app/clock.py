"""The clock: ``fire_due(now)`` turns due schedules into runs, exactly once, and publishes them.

DESIGN.md "How a run flows", steps 1-3:

1. in one transaction per batch, claim due schedules (``FOR UPDATE SKIP LOCKED``), insert one run row per due
   instant keyed ``UNIQUE (schedule_id, scheduled_for)`` with ``ON CONFLICT DO NOTHING``, advance
   ``next_fire_at``; missed instants become ``missed`` runs;
2. publish every run still ``scheduled`` and mark it ``enqueued``;
3. which is also the outbox sweep: a run committed by a tick that crashed before publishing is still
   ``scheduled``, so the next tick sends it. Step 2 locks the rows it publishes, so two ticks never send the
   same run; a crash after sending and before marking can send it twice, which the worker's idempotent start
   absorbs (delivery is at-least-once).

Memory is bounded by ``batch``: no step loads more than one batch of schedules or runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from app.db.queries import sql
from app.misfire import Misfire, due_fires
from app.publisher import Publisher
from app.schedule import OPTION_FIELDS, message_options
from app.tracing import current_trace_id, inject_traceparent

if TYPE_CHECKING:
    from app.db.pool import Pool

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("punchclock.clock")


@dataclass(frozen=True)
class TickReport:
    fired: int = 0
    missed: int = 0
    published: int = 0


async def fire_due(pool: Pool, publisher: Publisher, now: datetime, *, batch: int = 500) -> TickReport:
    """Fire everything due at ``now`` (the database's clock) and publish every unpublished run."""
    fired = missed = 0
    while True:
        claimed, batch_fired, batch_missed = await _fire_batch(pool, now, batch)
        fired += batch_fired
        missed += batch_missed
        if claimed < batch:
            break
    async with pool.acquire() as conn:
        requeued = await conn.fetchval(sql("release_expired_locks"))
    if requeued:
        logger.warning(
            "expired leases freed: their holders' workers died; runs waiting on them re-published",
            extra={"action": "leases_expired", "requeued": requeued},
        )
    published = await publish_unpublished(pool, publisher, batch=batch)
    return TickReport(fired=fired, missed=missed, published=published)


async def _fire_batch(pool: Pool, now: datetime, batch: int) -> tuple[int, int, int]:
    """One transaction: claim up to ``batch`` due schedules, insert their runs, advance them."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [], [])
    advanced_ids: list[int] = []
    advanced_to: list[datetime] = []
    async with pool.acquire() as conn, conn.transaction():
        schedules = await conn.fetch(sql("claim_due_schedules"), now, batch)
        for row in schedules:
            decision = due_fires(
                row["cron"],
                row["timezone"],
                Misfire(row["misfire"]),
                row["catchup_window"],
                row["next_fire_at"],
                now,
            )
            options = message_options(schedule_id=row["id"], **{name: row[name] for name in OPTION_FIELDS})
            trace_id = None
            if decision.fire:
                # The trace of this fire, frozen in the runs' options: whoever publishes them later (another
                # thread, tick or process) continues it, so tick → fire → run is one trace.
                attributes = {"punchclock.schedule": row["name"], "punchclock.schedule_id": row["id"]}
                with tracer.start_as_current_span(f"fire {row['name']}", attributes=attributes):
                    inject_traceparent(options)
                    trace_id = current_trace_id()
            for instants, state in ((decision.fire, "scheduled"), (decision.missed, "missed")):
                for instant in instants:
                    firing = state == "scheduled"
                    delay = jitter_ms(row["jitter"], random.random()) if firing else 0
                    values = (
                        row["id"],
                        row["name"],
                        row["actor"],
                        row["args"],
                        options,
                        instant,
                        "cron",
                        state,
                        delay,
                        trace_id if firing else None,
                    )
                    for column, value in zip(columns, values, strict=True):
                        column.append(value)
            if decision.unrecorded_before is not None:
                logger.warning(
                    "instants missed too long ago to record one by one",
                    extra={
                        "action": "misfire_unrecorded",
                        "schedule": row["name"],
                        "from": row["next_fire_at"].isoformat(),
                        "to": decision.unrecorded_before.isoformat(),
                    },
                )
            advanced_ids.append(row["id"])
            advanced_to.append(decision.next_fire_at)
        inserted = await conn.fetch(sql("insert_runs"), *columns) if columns[0] else []
        if advanced_ids:
            await conn.execute(sql("advance_schedules"), advanced_ids, advanced_to)
    fired = missed = 0
    for run in inserted:
        is_fire = run["state"] == "scheduled"
        fired += is_fire
        missed += not is_fire
        logger.info(
            "schedule fired" if is_fire else "instant missed",
            extra={
                "action": "schedule_fired" if is_fire else "run_missed",
                "schedule": run["schedule_name"],
                "run_id": run["id"],
                "scheduled_for": run["scheduled_for"].isoformat(),
            },
        )
    return len(schedules), fired, missed


def jitter_ms(jitter: timedelta, draw: float) -> int:
    """A run's start delay: ``draw`` (uniform in [0, 1)) of the schedule's jitter, in ms. Drawn once when the
    run is fired and stored on it, so a re-publish or redelivery keeps it."""
    return int(jitter.total_seconds() * 1000 * draw)


async def publish_unpublished(pool: Pool, publisher: Publisher, *, batch: int = 500) -> int:
    """Publish runs still ``scheduled``, a locked batch at a time; return how many were sent.

    A broker failure mid-batch keeps what was sent (marked ``enqueued``) and re-raises after the commit, so
    nothing sent is sent again and nothing unsent is lost.
    """
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            runs = await conn.fetch(sql("claim_unpublished_runs"), batch)
            if not runs:
                return total
            outcome = await asyncio.to_thread(publisher.publish, runs)
            if outcome.published:
                await conn.execute(sql("mark_enqueued"), outcome.published)
            if outcome.unpublishable:
                ids, errors = zip(*outcome.unpublishable, strict=True)
                await conn.execute(sql("fail_unpublishable_runs"), list(ids), list(errors))
        for run_id, error in outcome.unpublishable:
            logger.error(error, extra={"action": "run_unpublishable", "run_id": run_id})
        total += len(outcome.published)
        if outcome.error is not None:
            logger.error(
                "publishing stopped: the broker failed; unsent runs wait for the next tick",
                extra={"action": "publish_failed", "published": len(outcome.published), "error": str(outcome.error)},
            )
            raise outcome.error
        if len(runs) < batch:
            return total


async def tick(pool: Pool, publisher: Publisher, *, batch: int = 500) -> TickReport:
    """One tick: ``fire_due`` at the database's clock, so every clock process agrees on ``now``."""
    now: datetime = await pool.fetchval(sql("db_now"))
    report = await fire_due(pool, publisher, now, batch=batch)
    logger.debug(
        "tick",
        extra={
            "action": "tick",
            "now": now.isoformat(),
            "fired": report.fired,
            "missed": report.missed,
            "published": report.published,
        },
    )
    return report

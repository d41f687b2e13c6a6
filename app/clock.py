"""The clock: ``fire_due(now)`` turns due schedules into runs, exactly once, and publishes them.

docs/design.md, "How a run flows", steps 1-3:

1. in one transaction per batch, claim due schedules (``FOR UPDATE SKIP LOCKED``), insert one run row per due
   instant keyed ``UNIQUE (schedule_id, scheduled_for)`` with ``ON CONFLICT DO NOTHING``, advance
   ``next_fire_at``; missed instants become ``missed`` runs;
2. publish every run still ``scheduled`` and mark it ``enqueued``;
3. which is also the outbox sweep: a run committed by a tick that crashed before publishing is still
   ``scheduled``, so the next tick sends it. Step 2 locks the rows it publishes, so two ticks never send the
   same run; a crash after sending and before marking can send it twice, which the worker's idempotent start
   absorbs (delivery is at-least-once).

Between 1 and 2 the recovery sweep (:mod:`app.recovery`) moves on whatever a crash or an outage left behind
(lost attempts, lost messages, follow-ups and notifications), putting runs that need a message back in the
outbox that step 2 publishes. After step 2, what can wait: the stats rollup's upkeep (:mod:`app.stats_rollup`)
and one batch of retention (:func:`app.recovery.prune`).

Memory is bounded by ``batch``: no step loads more than one batch of schedules or runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from app.db.queries import sql
from app.misfire import Misfire, due_fires
from app.publisher import Publisher
from app.recovery import Sweep, prune, sweep
from app.schedule import message_options
from app.stats_rollup import roll_up
from app.tracing import current_trace_id, inject_traceparent
from app.upstream_gate import Gate, UpstreamRun, Verdict, gate

if TYPE_CHECKING:
    from asyncpg import Record

    from app.db.pool import Connection, Pool

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("punchclock.clock")


@dataclass(frozen=True)
class TickReport:
    fired: int = 0
    missed: int = 0
    published: int = 0


async def fire_due(
    pool: Pool, publisher: Publisher, now: datetime, *, batch: int = 500, recovery: Sweep | None = None
) -> TickReport:
    """Fire everything due at ``now`` (the database's clock), sweep (when ``recovery`` is given) and publish
    every unpublished run."""
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
    if recovery is not None:
        try:
            await sweep(pool, recovery, batch=batch)
        except Exception as exc:  # the next tick sweeps again; publishing what is ready must not wait for it
            logger.error("recovery sweep failed", extra={"action": "sweep_failed", "error": str(exc)})
    published = await publish_unpublished(pool, publisher, batch=batch)
    try:
        await roll_up(pool)
    except Exception as exc:  # stats stay exact without it (they read what is pending); the next tick tries again
        logger.error("stats rollup failed", extra={"action": "stats_rollup_failed", "error": str(exc)})
    if recovery is not None:
        try:
            await prune(pool, recovery)
        except Exception as exc:  # the next tick prunes again
            logger.error("pruning past the retention failed", extra={"action": "prune_failed", "error": str(exc)})
    return TickReport(fired=fired, missed=missed, published=published)


async def _fire_batch(pool: Pool, now: datetime, batch: int) -> tuple[int, int, int]:
    """One transaction: claim up to ``batch`` due schedules, insert their runs, advance them."""
    columns: tuple[list[Any], ...] = tuple([] for _ in range(12))
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
            gates, next_fire_at = await _gate_upstreams(conn, row, decision.fire, decision.next_fire_at, now)
            options = message_options(row["id"], row)
            trace_id = None
            if any(g.verdict is Verdict.FIRE for g in gates.values()):
                # The trace of this fire, frozen in the runs' options: whoever publishes them later (another
                # thread, tick or process) continues it, so tick → fire → run is one trace.
                attributes = {"punchclock.schedule": row["name"], "punchclock.schedule_id": row["id"]}
                with tracer.start_as_current_span(f"fire {row['name']}", attributes=attributes):
                    inject_traceparent(options)
                    trace_id = current_trace_id()
            rows: list[tuple[Any, ...]] = [
                (instant, "missed", row["args"], 0, None, None, None) for instant in decision.missed
            ]
            for instant, verdict in gates.items():
                if verdict.verdict is Verdict.FIRE:
                    args = {**row["args"], "upstream": verdict.upstream} if row["after"] else row["args"]
                    delay = jitter_ms(row["jitter"], random.random())
                    rows.append((instant, "scheduled", args, delay, trace_id, None, None))
                else:
                    rows.append((instant, "skipped", row["args"], 0, None, verdict.reason, verdict.blocked_by))
            for instant, state, args, delay, run_trace, error, blocked_by in rows:
                values = (row["id"], row["name"], row["actor"], args, options, instant, "cron", state, delay)
                for column, value in zip(columns, (*values, run_trace, error, blocked_by), strict=True):
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
            advanced_to.append(next_fire_at)
        inserted = await conn.fetch(sql("insert_runs"), *columns) if columns[0] else []
        if advanced_ids:
            await conn.execute(sql("advance_schedules"), advanced_ids, advanced_to)
    fired = missed = 0
    for run in inserted:
        is_fire = run["state"] == "scheduled"
        fired += is_fire
        missed += run["state"] == "missed"
        action = {"scheduled": "schedule_fired", "missed": "run_missed"}.get(run["state"], "run_skipped_upstream")
        logger.info(
            {"schedule_fired": "schedule fired", "run_missed": "instant missed"}.get(action, "upstream not ready"),
            extra={
                "action": action,
                "schedule": run["schedule_name"],
                "run_id": run["id"],
                "scheduled_for": run["scheduled_for"].isoformat(),
            },
        )
    return len(schedules), fired, missed


async def _gate_upstreams(
    conn: Connection, row: Record, instants: Sequence[datetime], next_fire_at: datetime, now: datetime
) -> tuple[dict[datetime, Gate], datetime]:
    """The gate of each instant to fire (all fire when the schedule has no ``after``), and the schedule's next
    ``next_fire_at``: the first instant that waits for an upstream, which stays due (app/upstream_gate.py)."""
    if not row["after"]:
        return {instant: Gate(Verdict.FIRE) for instant in instants}, next_fire_at
    gates: dict[datetime, Gate] = {}
    for instant in instants:
        upstreams = [
            UpstreamRun(up["name"], up["id"], up["state"], up["output"])
            for up in await conn.fetch(sql("upstream_latest"), list(row["after"]), instant)
        ]
        verdict = gate(upstreams, instant=instant, now=now, patience=row["catchup_window"])
        if verdict.verdict is Verdict.WAIT:
            return gates, instant
        gates[instant] = verdict
    return gates, next_fire_at


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


async def tick(pool: Pool, publisher: Publisher, *, batch: int = 500, recovery: Sweep | None = None) -> TickReport:
    """One tick: ``fire_due`` at the database's clock, so every clock process agrees on ``now``."""
    now: datetime = await pool.fetchval(sql("db_now"))
    report = await fire_due(pool, publisher, now, batch=batch, recovery=recovery)
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

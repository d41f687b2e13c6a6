"""punchclock_start_run / punchclock_finish_run on a real PostgreSQL: leases, attempts, idempotence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from app.runs import RunState, finish_attempt, start_run

TTL = timedelta(minutes=5)


async def new_run(pool: asyncpg.Pool[Any], trigger: str = "manual") -> int:
    run_id: int = await pool.fetchval(
        "INSERT INTO runs (actor, scheduled_for, trigger, state) VALUES ('probe', now(), $1, 'enqueued') RETURNING id",
        trigger,
    )
    return run_id


async def test_start_and_finish_record_attempts_and_are_idempotent(pool: asyncpg.Pool[Any]) -> None:
    run = await new_run(pool)
    started = await start_run(pool, run, None, "allow", TTL)
    assert (started.outcome, started.attempt) == ("started", 1)
    assert await finish_attempt(pool, run, RunState.RETRYING, error="boom", retry_delay_ms=1500) is not None
    assert (await start_run(pool, run, None, "allow", TTL)).attempt == 2
    assert await finish_attempt(pool, run, RunState.SUCCEEDED, output={"ok": 1}) is not None
    # A redelivered message for the finished run: nothing to start, nothing to finish.
    assert (await start_run(pool, run, None, "allow", TTL)).outcome == "over"
    assert await finish_attempt(pool, run, RunState.FAILED) is None
    row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", run)
    assert (row["state"], row["attempts"], row["output"]) == ("succeeded", 2, {"ok": 1})
    attempts = await pool.fetch("SELECT * FROM run_attempts WHERE run_id = $1 ORDER BY attempt", run)
    assert [(a["state"], a["error"], a["retry_delay_ms"]) for a in attempts] == [
        ("retrying", "boom", 1500),
        ("succeeded", None, None),
    ]


async def test_skip_queue_and_the_lease_handover(pool: asyncpg.Pool[Any]) -> None:
    holder, queued, extra = await new_run(pool), await new_run(pool), await new_run(pool)
    assert (await start_run(pool, holder, "k", "queue", TTL)).outcome == "started"
    assert (await start_run(pool, queued, "k", "queue", TTL)).outcome == "queued"
    skipped = await start_run(pool, extra, "k", "queue", TTL)
    assert (skipped.outcome, skipped.holder) == ("skipped", holder)
    row = await pool.fetchrow("SELECT state, blocked_by FROM runs WHERE id = $1", extra)
    assert (row["state"], row["blocked_by"]) == ("skipped", holder)

    finished = await finish_attempt(pool, holder, RunState.SUCCEEDED)
    assert finished is not None and finished.released_waiting_run == queued
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", queued) == "scheduled"  # back to the outbox
    assert (await start_run(pool, queued, "k", "queue", TTL)).outcome == "started"


async def test_an_expired_lease_is_taken_over_and_backfill_waits(pool: asyncpg.Pool[Any]) -> None:
    dead, backfill, later = await new_run(pool), await new_run(pool, "backfill"), await new_run(pool)
    assert (await start_run(pool, dead, "k", "skip", timedelta(seconds=60))).outcome == "started"
    assert (await start_run(pool, backfill, "k", "skip", TTL)).outcome == "wait"
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", backfill) == "enqueued"  # untouched
    await pool.execute("UPDATE run_locks SET expires_at = now() - interval '1 second'")  # its worker died
    assert (await start_run(pool, later, "k", "skip", TTL)).outcome == "started"
    assert await pool.fetchval("SELECT run_id FROM run_locks WHERE lock_key = 'k'") == later


async def test_expired_leases_send_their_waiting_run_back_to_the_outbox(pool: asyncpg.Pool[Any]) -> None:
    holder, waiting = await new_run(pool), await new_run(pool)
    await start_run(pool, holder, "k", "queue", TTL)
    await start_run(pool, waiting, "k", "queue", TTL)
    await pool.execute("UPDATE run_locks SET expires_at = now() - interval '1 second'")
    assert await pool.fetchval("SELECT punchclock_release_expired_locks()") == 1
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", waiting) == "scheduled"
    assert await pool.fetchval("SELECT count(*) FROM run_locks") == 0

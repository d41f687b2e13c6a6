"""punchclock_start_run / punchclock_finish_run on a real PostgreSQL: leases, attempts, idempotence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from app.db.queries import sql
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
    # A duplicate message arriving before the backoff is over waits for it.
    early = await start_run(pool, run, None, "allow", TTL)
    assert early.outcome == "early" and early.wait_ms is not None and 500 < early.wait_ms <= 1500
    await pool.execute("UPDATE runs SET next_attempt_at = now() WHERE id = $1", run)  # the backoff is over
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


async def expire(pool: asyncpg.Pool[Any], run_id: int) -> None:
    """The running attempt's worker stopped heartbeating a while ago."""
    await pool.execute("UPDATE runs SET alive_until = now() - interval '1 second' WHERE id = $1", run_id)
    await pool.execute("UPDATE run_locks SET expires_at = now() - interval '1 second' WHERE run_id = $1", run_id)


async def test_a_duplicate_of_a_live_attempt_never_starts_and_is_dropped_after_it(pool: asyncpg.Pool[Any]) -> None:
    for key, policy in ((None, "allow"), ("k40", "skip")):
        run = await new_run(pool)
        assert (await start_run(pool, run, key, policy, TTL)).outcome == "started"
        busy = await start_run(pool, run, key, policy, TTL)  # the broker redelivered the message
        assert (busy.outcome, busy.attempt) == ("busy", 1)
        assert busy.wait_ms is not None and 0 < busy.wait_ms <= TTL.total_seconds() * 1000
        assert await pool.fetchval("SELECT attempts FROM runs WHERE id = $1", run) == 1
        assert await finish_attempt(pool, run, RunState.SUCCEEDED, attempt=1) is not None
        assert (await start_run(pool, run, key, policy, TTL)).outcome == "over"
        attempts = await pool.fetch("SELECT state FROM run_attempts WHERE run_id = $1", run)
        assert [a["state"] for a in attempts] == ["succeeded"]


async def test_an_expired_attempt_is_lost_and_taken_over_and_its_late_finish_is_ignored(
    pool: asyncpg.Pool[Any],
) -> None:
    run = await new_run(pool)
    await pool.execute("UPDATE runs SET options = '{\"max_retries\": 3}' WHERE id = $1", run)
    assert (await start_run(pool, run, "k", "skip", TTL)).attempt == 1
    await expire(pool, run)
    took = await start_run(pool, run, "k", "skip", TTL)
    assert (took.outcome, took.attempt) == ("took_over", 2)
    # The first attempt's worker was alive after all and finishes late: fenced out, nothing changes.
    assert await finish_attempt(pool, run, RunState.SUCCEEDED, attempt=1, output="late") is None
    assert await finish_attempt(pool, run, RunState.SUCCEEDED, attempt=2, output="ok") is not None
    row = await pool.fetchrow("SELECT state, output, attempts FROM runs WHERE id = $1", run)
    assert (row["state"], row["output"], row["attempts"]) == ("succeeded", "ok", 2)
    attempts = await pool.fetch("SELECT state, error FROM run_attempts WHERE run_id = $1 ORDER BY attempt", run)
    assert [a["state"] for a in attempts] == ["lost", "succeeded"]
    assert "stopped heartbeating" in attempts[0]["error"]


async def test_a_lost_attempt_with_no_retry_left_fails_the_run(pool: asyncpg.Pool[Any]) -> None:
    run = await new_run(pool)
    await pool.execute("UPDATE runs SET options = '{\"max_retries\": 0}' WHERE id = $1", run)
    await start_run(pool, run, None, "allow", TTL)
    await expire(pool, run)
    assert (await start_run(pool, run, None, "allow", TTL)).outcome == "over"
    row = await pool.fetchrow("SELECT state, error, finished_at FROM runs WHERE id = $1", run)
    assert row["state"] == "failed" and row["finished_at"] is not None
    assert "stopped heartbeating" in row["error"] and "no retry left (max_retries 0)" in row["error"]
    assert await pool.fetchval("SELECT state FROM run_attempts WHERE run_id = $1", run) == "failed"


async def test_the_sweep_recovers_lost_attempts_by_their_policy(pool: asyncpg.Pool[Any]) -> None:
    retry, last, cancel, alive = [await new_run(pool) for _ in range(4)]
    await pool.execute("UPDATE runs SET options = '{\"max_retries\": 0}' WHERE id = $1", last)
    for run in (retry, last, cancel, alive):
        await start_run(pool, run, None, "allow", TTL)
    await pool.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", cancel)
    for run in (retry, last, cancel):
        await expire(pool, run)
    rows = await pool.fetch("SELECT run_id, state FROM punchclock_recover_lost(10) ORDER BY run_id")
    assert [(r["run_id"], r["state"]) for r in rows] == [(retry, "scheduled"), (last, "failed"), (cancel, "cancelled")]
    states = {r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM runs")}
    assert states == {retry: "scheduled", last: "failed", cancel: "cancelled", alive: "running"}
    assert await pool.fetchval("SELECT count(*) FROM run_attempts WHERE state = 'running'") == 1
    # Back in the outbox, the recovered run starts its second attempt.
    assert (await start_run(pool, retry, None, "allow", TTL)).attempt == 2


async def test_the_heartbeat_keeps_an_attempt_alive_and_names_superseded_ones(pool: asyncpg.Pool[Any]) -> None:
    mine, cancelled, lost = await new_run(pool), await new_run(pool), await new_run(pool)
    for run in (mine, cancelled, lost):
        await start_run(pool, run, f"lock-{run}", "skip", timedelta(seconds=5))
    await pool.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", cancelled)
    await expire(pool, lost)
    await start_run(pool, lost, f"lock-{lost}", "skip", TTL)  # taken over elsewhere: attempt 2
    rows = await pool.fetch(sql("heartbeat"), [mine, cancelled, lost], [1, 1, 1], TTL)
    assert {(r["id"], r["superseded"]) for r in rows} == {(cancelled, False), (lost, True)}
    alive = await pool.fetchval("SELECT alive_until - now() FROM runs WHERE id = $1", mine)
    assert alive > timedelta(minutes=4)
    lease = await pool.fetchval("SELECT expires_at - now() FROM run_locks WHERE run_id = $1", mine)
    assert lease > timedelta(minutes=4)


async def test_the_sweep_republishes_runs_whose_message_never_came(pool: asyncpg.Pool[Any]) -> None:
    stale, fresh, waiting, retrying = [await new_run(pool) for _ in range(4)]
    await pool.execute(
        "UPDATE runs SET enqueued_at = now() - interval '20 minutes' WHERE id = ANY($1::bigint[])", [stale, waiting]
    )
    await pool.execute("UPDATE runs SET enqueued_at = now() WHERE id = $1", fresh)
    await pool.execute("INSERT INTO run_locks VALUES ('k', $1, now() + interval '1 minute', $2)", fresh, waiting)
    await pool.execute(
        "UPDATE runs SET state = 'retrying', next_attempt_at = now() - interval '20 minutes' WHERE id = $1", retrying
    )
    rows = await pool.fetch(sql("republish_stale_runs"), timedelta(minutes=10), 100)
    assert sorted((r["id"], r["was"]) for r in rows) == [(stale, "enqueued"), (retrying, "retrying")]
    states = {r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM runs")}
    assert states == {stale: "scheduled", fresh: "enqueued", waiting: "enqueued", retrying: "scheduled"}


async def test_a_final_failure_marks_its_followups_due_in_the_same_statement(pool: asyncpg.Pool[Any]) -> None:
    schedule = await pool.fetchval(
        "INSERT INTO schedules (name, actor, notify) VALUES ('s', 'probe', '{webhook:http://127.0.0.1:9/h}')"
        " RETURNING id"
    )
    quiet, noisy = await new_run(pool), await new_run(pool)
    await pool.execute("UPDATE runs SET schedule_id = $1 WHERE id = $2", schedule, noisy)
    for run in (quiet, noisy):
        await start_run(pool, run, None, "allow", TTL)
        outcome = await finish_attempt(pool, run, RunState.FAILED, attempt=1, error="boom")
        assert outcome is not None and outcome.followups_due is (run == noisy)
    due = await pool.fetch("SELECT id FROM runs WHERE followups_due")
    assert [r["id"] for r in due] == [noisy]

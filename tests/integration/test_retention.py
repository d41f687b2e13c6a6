"""Retention on the real PostgreSQL: what ``runs prune`` and the sweep delete (old final runs, with their attempts,
steps and notifications), what they keep whatever its age, batches, the dry run, and the CLI's answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from app import retention
from app.db.queries import sql
from app.notify.store import create_notifications
from app.recovery import Sweep, prune
from app.runs import RunState, finish_attempt, start_run
from tests.integration.test_cli import cli, wiring
from tests.integration.test_run_stats import add_schedule, assert_rollup_matches_runs

if TYPE_CHECKING:
    Pool = asyncpg.Pool[Any]

__all__ = ["wiring"]  # the module fixture that imports app.actors with the tests' settings

DAY = timedelta(days=1)
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "missed")


async def add_run(
    pool: Pool,
    schedule_id: int | None,
    name: str,
    state: str,
    age: timedelta,
    *,
    trigger: str = "cron",
    **columns: Any,
) -> int:
    """A run of schedule ``name`` created ``age`` ago for the instant then; final ones started then and finished
    a minute later (skipped and missed ones: finished when created, never started)."""
    now: datetime = await pool.fetchval("SELECT now()")
    created = now - age
    values: dict[str, Any] = {"created_at": created, "scheduled_for": created}
    if state in FINAL:
        started = state not in ("skipped", "missed")
        finished = created + timedelta(minutes=1) if started else created
        values |= {"started_at": created if started else None, "finished_at": finished}
    elif state != "scheduled":
        values["started_at"] = created
    values |= columns
    names = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(5, len(values) + 5))
    run_id: int = await pool.fetchval(
        f"INSERT INTO runs (schedule_id, schedule_name, actor, trigger, state, {names})"
        f" VALUES ($1, $2, 'probe', $3, $4, {placeholders}) RETURNING id",
        schedule_id,
        name,
        trigger,
        state,
        *values.values(),
    )
    return run_id


async def add_history(pool: Pool, run_id: int) -> None:
    """Two attempts, a notification and a step for run ``run_id``."""
    await pool.execute(
        "INSERT INTO run_attempts (run_id, attempt, started_at, finished_at, state)"
        " SELECT $1, a, now(), now(), 'failed' FROM generate_series(1, 2) a",
        run_id,
    )
    await pool.execute(
        "INSERT INTO notifications (run_id, target, event, state)"
        " VALUES ($1, 'webhook:http://x/***', 'failure', 'sent')",
        run_id,
    )
    await pool.execute(
        "INSERT INTO run_steps (run_id, attempt, seq, name, started_at, finished_at, status)"
        " VALUES ($1, 1, 1, 'fetch', now(), now(), 'ok')",
        run_id,
    )


async def ids(pool: Pool, table: str = "runs", column: str = "id") -> set[int]:
    return {row[0] for row in await pool.fetch(f"SELECT DISTINCT {column} FROM {table}")}


@dataclass
class History:
    """Runs of every kind, old and new; ``gone`` are those a prune 30 days back deletes, ``kept`` the rest."""

    gone: set[int]
    kept: set[int]
    holder: int
    blocked: int


async def history(pool: Pool) -> History:
    etl, idle = await add_schedule(pool, "etl"), await add_schedule(pool, "idle")
    gone = {
        await add_run(pool, etl, "etl", "succeeded", 40 * DAY),
        await add_run(pool, etl, "etl", "failed", 39 * DAY),
        await add_run(pool, etl, "etl", "timed_out", 39 * DAY + timedelta(hours=1)),
        await add_run(pool, etl, "etl", "cancelled", 38 * DAY, started_at=None),
        await add_run(pool, etl, "etl", "skipped", 37 * DAY),
        await add_run(pool, etl, "etl", "missed", 36 * DAY),
        # a manual run, a missed instant and a deleted schedule's run are never what the `after` gate reads
        await add_run(pool, idle, "idle", "succeeded", 70 * DAY, trigger="manual"),
        await add_run(pool, idle, "idle", "missed", 50 * DAY),
        await add_run(pool, None, "gone", "succeeded", 45 * DAY),
    }
    holder = await add_run(pool, etl, "etl", "succeeded", 35 * DAY)
    kept = {
        holder,
        # not final, whatever their age
        await add_run(pool, etl, "etl", "running", 40 * DAY, attempts=1),
        await add_run(pool, etl, "etl", "retrying", 40 * DAY, attempts=1),
        await add_run(pool, etl, "etl", "enqueued", 40 * DAY),
        await add_run(pool, etl, "etl", "scheduled", 40 * DAY),
        # its follow-ups are still due
        await add_run(pool, etl, "etl", "failed", 34 * DAY, followups_due=True),
        # idle's latest run that executed: what the clock's `after` gate reads for schedules after "idle"
        await add_run(pool, idle, "idle", "succeeded", 60 * DAY),
        # recent
        await add_run(pool, etl, "etl", "succeeded", timedelta(hours=1)),
        await add_run(pool, etl, "etl", "failed", 29 * DAY),
    }
    # skipped an hour ago naming `holder` in blocked_by: `holder` stays while this run does
    blocked = await add_run(pool, etl, "etl", "skipped", timedelta(hours=1), blocked_by=holder)
    kept.add(blocked)
    for run_id in gone | kept:
        await add_history(pool, run_id)
    return History(gone, kept, holder, blocked)


async def test_prune_deletes_only_old_final_runs_with_their_history(pool: Pool) -> None:
    h = await history(pool)
    cutoff: datetime = await pool.fetchval("SELECT now()") - 30 * DAY

    assert await retention.count_prunable(pool, cutoff) == len(h.gone)
    assert await ids(pool) == h.gone | h.kept  # the dry run deleted nothing

    reports: list[retention.Progress] = []
    done = await retention.prune(pool, cutoff, batch=2, report=reports.append, report_every=0)
    # 2+2+2+2+1, one that finds nothing after the last hour reached, one from the oldest hour again
    assert (done.deleted, done.batches) == (len(h.gone), 7)
    assert [p.deleted for p in reports] == [2, 4, 6, 8, 9]
    assert await ids(pool) == h.kept
    for table in ("run_attempts", "notifications", "run_steps"):
        assert await ids(pool, table, "run_id") == h.kept, table
    await assert_rollup_matches_runs(pool)

    # once the run naming it goes, the run it named can go too
    await pool.execute("DELETE FROM runs WHERE id = $1", h.blocked)
    done = await retention.prune(pool, cutoff)
    assert (done.deleted, done.batches) == (1, 3)
    assert h.holder not in await ids(pool)


async def test_a_batch_is_bounded_and_takes_the_oldest_hours_first(pool: Pool) -> None:
    etl = await add_schedule(pool, "etl")
    old = [await add_run(pool, etl, "etl", "succeeded", 40 * DAY - timedelta(hours=hour)) for hour in range(5)]
    await add_run(pool, etl, "etl", "succeeded", timedelta(hours=1))  # the latest: never pruned here anyway
    cutoff: datetime = await pool.fetchval("SELECT now()") - 30 * DAY

    first = await retention.prune_batch(pool, cutoff, 2)
    assert first.deleted == 2 and first.last_hour == await pool.fetchval(
        "SELECT date_bin('1 hour', created_at, TIMESTAMPTZ '2000-01-01Z') FROM runs WHERE id = $1", old[2]
    ) - timedelta(hours=1)
    assert not {old[0], old[1]} & await ids(pool)
    assert (await retention.prune_batch(pool, cutoff, 2, from_hour=first.last_hour)).deleted == 2
    # a batch from a later hour leaves the hours before it alone
    assert await retention.prune_batch(pool, cutoff, 2, from_hour=cutoff) == retention.Batch(0, None)
    assert (await retention.prune_batch(pool, cutoff, 2)).deleted == 1
    assert await retention.prune_batch(pool, cutoff, 2) == retention.Batch(0, None)
    assert not set(old) & await ids(pool)


async def test_prune_skips_a_run_locked_elsewhere_without_waiting(pool: Pool) -> None:
    etl = await add_schedule(pool, "etl")
    locked = await add_run(pool, etl, "etl", "succeeded", 40 * DAY)
    free = await add_run(pool, etl, "etl", "succeeded", 40 * DAY)
    await add_run(pool, etl, "etl", "succeeded", timedelta(hours=1))
    cutoff: datetime = await pool.fetchval("SELECT now()") - 30 * DAY
    async with pool.acquire() as other, other.transaction():
        await other.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", locked)
        assert (await retention.prune_batch(pool, cutoff, 10)).deleted == 1
        assert free not in await ids(pool)
    assert (await retention.prune_batch(pool, cutoff, 10)).deleted == 1
    assert locked not in await ids(pool)


async def test_every_final_run_has_a_finishing_time(pool: Pool) -> None:
    """Retention prunes by finished_at: the clock's missed and skipped rows carry one, and a writer that sets a
    run final without one, or takes a run out of a final state keeping it, is refused, naming the rule."""
    etl = await add_schedule(pool, "etl")
    rows = await pool.fetch(
        sql("insert_runs"),
        [etl, etl],
        ["etl", "etl"],
        ["probe", "probe"],
        ["{}", "{}"],
        ["{}", "{}"],
        [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)],
        ["cron", "cron"],
        ["missed", "skipped"],
        [0, 0],
        [None, None],
        [None, "skipped: upstream not ready"],
        [None, None],
    )
    stamped = await pool.fetch(
        "SELECT state, finished_at = created_at AS now FROM runs WHERE id = ANY($1::bigint[]) ORDER BY id",
        [row["id"] for row in rows],
    )
    assert [tuple(row) for row in stamped] == [("missed", True), ("skipped", True)]
    with pytest.raises(asyncpg.CheckViolationError, match="runs_finished_when_final"):
        await pool.execute(
            "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
            " VALUES ($1, 'etl', 'probe', now() - interval '1 hour', 'manual', 'missed')",
            etl,
        )
    with pytest.raises(asyncpg.CheckViolationError, match="runs_finished_when_final"):
        await pool.execute("UPDATE runs SET finished_at = NULL WHERE id = $1", rows[0]["id"])
    with pytest.raises(asyncpg.CheckViolationError, match="runs_finished_when_final"):  # and only a final one
        await pool.execute("UPDATE runs SET state = 'enqueued' WHERE id = $1", rows[0]["id"])


# the sweep -------------------------------------------------------------------------------------------------


def sweep_config(kept_for: timedelta | None) -> Sweep:
    return Sweep(
        republish_after=timedelta(minutes=10),
        create_notifications=create_notifications,
        send_notification=lambda notification_id: None,
        retention=kept_for,
    )


async def test_the_sweep_prunes_one_batch_of_whole_hours(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    etl = await add_schedule(pool, "etl")
    now: datetime = await pool.fetchval("SELECT now()")
    # a retention reaching back to half past an hour two days ago: the sweep prunes up to that hour's start
    hour = (now - 2 * DAY).replace(minute=0, second=0, microsecond=0)
    kept_for = now - (hour + timedelta(minutes=30))
    assert retention.sweep_cutoff(now, kept_for) == hour
    old = [await add_run(pool, etl, "etl", "succeeded", 3 * DAY + timedelta(minutes=m)) for m in range(5)]
    # past the retention, but in the hour it reaches into: it goes with that whole hour, an hour later
    in_the_hour = await add_run(pool, etl, "etl", "succeeded", now - hour, finished_at=hour + timedelta(minutes=15))
    latest = await add_run(pool, etl, "etl", "succeeded", timedelta(minutes=5))
    monkeypatch.setattr("app.recovery.SWEEP_BATCH", 3)

    assert await prune(pool, sweep_config(None)) == 0
    assert await prune(pool, sweep_config(kept_for)) == 3
    assert await prune(pool, sweep_config(kept_for)) == 2
    assert await prune(pool, sweep_config(kept_for)) == 0
    assert await ids(pool) == {in_the_hour, latest}
    assert not set(old) & await ids(pool)
    await assert_rollup_matches_runs(pool)


async def test_a_run_ended_by_its_worker_is_counted_once_by_the_sweep_and_prune(pool: Pool) -> None:
    """End to end through the worker's own functions: started, finished, then pruned from the rollup too."""
    etl = await add_schedule(pool, "etl")
    run_id = await add_run(pool, etl, "etl", "enqueued", 40 * DAY)
    assert (await start_run(pool, run_id, None, "allow", timedelta(minutes=5))).started
    assert await finish_attempt(pool, run_id, RunState.FAILED, attempt=1, error="boom") is not None
    await pool.execute("UPDATE runs SET finished_at = now() - interval '40 days' WHERE id = $1", run_id)
    await add_run(pool, etl, "etl", "succeeded", timedelta(hours=1))
    await assert_rollup_matches_runs(pool)
    assert await prune(pool, sweep_config(30 * DAY)) == 1
    await assert_rollup_matches_runs(pool)


# the CLI ---------------------------------------------------------------------------------------------------


async def test_runs_prune(punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]) -> None:
    h = await history(pool)

    assert await cli("runs", "prune", "--older-than", "30d", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(h.gone)} runs finished before ")
    assert out.endswith(" (older than 30d) would be pruned; dry run, nothing deleted\n")
    assert await ids(pool) == h.gone | h.kept

    assert await cli("runs", "prune", "--older-than", "30d", "--batch", "4") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(f"pruned {len(h.gone)} runs finished before ")
    assert " (older than 30d) in " in lines[-1] and lines[-1].endswith(" runs/s)")
    assert await ids(pool) == h.kept

    # PUNCHCLOCK_RUN_RETENTION (90d by default) when --older-than is not given
    assert await cli("runs", "prune") == 0
    assert capsys.readouterr().out.startswith("pruned 0 runs finished before ")
    await assert_rollup_matches_runs(pool)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--older-than", "12h"],
            {},
            "invalid --older-than 12h: too short: keep runs at least 1d after they finish (their notifications"
            " and dependents may still read them)",
        ),
        (
            ["--older-than", "soon"],
            {},
            '--older-than: invalid duration "soon": use a number with a unit s, m, h or d, like 90s, 10m, 1h, 2d',
        ),
        (["--older-than", "99999d"], {}, "invalid --older-than 99999d: too long: at most 36500d"),
        (["--batch", "0"], {}, "invalid --batch 0: must be 1-50000 runs per transaction (default 5000)"),
        (["--batch", "50001"], {}, "invalid --batch 50001: must be 1-50000 runs per transaction (default 5000)"),
        (
            [],
            {"PUNCHCLOCK_RUN_RETENTION": "off"},
            "retention is off (PUNCHCLOCK_RUN_RETENTION=off): pass --older-than DUR to prune runs anyway",
        ),
    ],
)
async def test_runs_prune_refuses_bad_input(
    punchclock_env: dict[str, str],
    pool: Pool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    h = await history(pool)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert await cli("runs", "prune", *argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"punchclock: error: {message}\n")
    assert await ids(pool) == h.gone | h.kept


async def test_a_bad_retention_setting_is_a_configuration_error(
    punchclock_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUNCHCLOCK_RUN_RETENTION", "12h")
    assert await cli("runs", "prune", "--dry-run") == 1
    assert capsys.readouterr().err == (
        'punchclock: error: PUNCHCLOCK_RUN_RETENTION="12h": too short: keep runs at least 1d after they finish'
        " (their notifications and dependents may still read them) (default 90d; off keeps runs forever)\n"
    )

"""The stats rollup (run_stats, migration 0006) on the real PostgreSQL: it holds exactly the final runs of ``runs``
through inserts, updates, deletes and truncation, migration 0006 builds it from the runs already there, and
``punchclock stats`` read from it equals the same figures read from every run (``cli_stats.sql``, the query it
replaced), percentiles included: exact up to ``EXACT_UP_TO`` timed runs, within ``RELATIVE_ERROR`` above."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from app.cli.database import Database
from app.cli.stats import schedule_stats
from app.db.migrate import available_migrations, migrate
from app.db.pool import connect
from app.db.queries import sql
from app.runs import RunState, finish_attempt, start_run
from app.stats import EXACT_UP_TO, RELATIVE_ERROR, bucket_seconds, histogram_percentile
from app.stats_rollup import roll_up
from tests import services
from tests.integration.test_cli import cli, wiring

if TYPE_CHECKING:
    Pool = asyncpg.Pool[Any]
    Conn = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]

__all__ = ["wiring"]  # the module fixture that imports app.actors with the tests' settings

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "missed")
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

# The final runs as the rollup should hold them, computed from `runs` by other means than the triggers.
EXPECTED_ROLLUP = f"""
SELECT coalesce(schedule_name, '') AS schedule_name, g.grain, g.period_start, state,
       punchclock_duration_bucket(started_at, finished_at) AS bucket, count(*) AS n
FROM runs
CROSS JOIN LATERAL (VALUES ('hour', date_bin('1 hour', created_at, {ORIGIN})),
                           ('day', date_bin('1 day', created_at, {ORIGIN}))) AS g (grain, period_start)
WHERE state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
GROUP BY 1, 2, 3, 4, 5
"""

Rollup = dict[tuple[str, str, datetime], tuple[dict[str, int], dict[int, int]]]


async def rollup_of_runs(conn: Conn | Pool) -> Rollup:
    expected: Rollup = {}
    for row in await conn.fetch(EXPECTED_ROLLUP):
        states, histogram = expected.setdefault((row["schedule_name"], row["grain"], row["period_start"]), ({}, {}))
        states[row["state"]] = states.get(row["state"], 0) + row["n"]
        if row["bucket"] is not None:
            histogram[row["bucket"]] = histogram.get(row["bucket"], 0) + row["n"]
    return expected


async def stored_rollup(conn: Conn | Pool, *, pending: bool = True) -> Rollup:
    """run_stats, plus (``pending``) the changes not moved into it yet, folded into their hour and day."""
    stored: Rollup = {}
    for row in await conn.fetch("SELECT * FROM run_stats"):
        assert list(row["buckets"]) == sorted(row["buckets"]), "buckets are stored ascending"
        assert all(count > 0 for count in row["counts"]), "no empty bucket is stored"
        assert all(row[state] >= 0 for state in FINAL), "no state below zero runs"
        states = {state: row[state] for state in FINAL if row[state]}
        stored[(row["schedule_name"], row["grain"], row["period_start"])] = (
            states,
            dict(zip(row["buckets"], row["counts"], strict=True)),
        )
    if pending:
        changes = await conn.fetch(
            f"SELECT schedule_name, hour, date_bin('1 day', hour, {ORIGIN}) AS day, state, bucket, n"
            " FROM run_stats_pending"
        )
        for change in changes:
            for key in (
                (change["schedule_name"], "hour", change["hour"]),
                (change["schedule_name"], "day", change["day"]),
            ):
                states, histogram = stored.setdefault(key, ({}, {}))
                states[change["state"]] = states.get(change["state"], 0) + change["n"]
                if change["bucket"] is not None:
                    histogram[change["bucket"]] = histogram.get(change["bucket"], 0) + change["n"]
        for key, (states, histogram) in list(stored.items()):
            for counts in (states, histogram):
                for name in [name for name, n in counts.items() if n == 0]:
                    del counts[name]
            if not states:
                del stored[key]
    return stored


async def assert_rollup_matches_runs(conn: Conn | Pool) -> None:
    """run_stats and the pending changes hold exactly the final runs; so does run_stats alone once every change
    is rolled up."""
    expected = await rollup_of_runs(conn)
    assert await stored_rollup(conn) == expected
    assert await roll_up(conn, batch=7, rounds=10**6) >= 0  # small batches: groups are taken whole all the same
    assert await conn.fetchval("SELECT count(*) FROM run_stats_pending") == 0
    assert await stored_rollup(conn, pending=False) == expected


async def add_schedule(pool: Pool, name: str) -> int:
    schedule_id: int = await pool.fetchval(
        "INSERT INTO schedules (name, actor, cron) VALUES ($1, 'probe', '* * * * *') RETURNING id", name
    )
    return schedule_id


# Runs of four schedules (one every 5 minutes at most, for three days) and some without a schedule name, in every
# state, lasting from under a millisecond to an hour, created at random moments: $1 how many.
RANDOM_RUNS = """
INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, attempts, created_at,
                  started_at, finished_at)
SELECT s.id, x.name, 'probe', x.created, 'manual', x.state, 1, x.created,
       CASE WHEN x.state NOT IN ('skipped', 'missed', 'scheduled', 'enqueued') THEN x.created END,
       CASE WHEN x.state IN ('succeeded', 'failed', 'timed_out', 'cancelled')
            THEN x.created + x.seconds * interval '1 second'
            WHEN x.state IN ('skipped', 'missed') THEN x.created END
FROM (SELECT (ARRAY['etl', 'etl', 'etl', 'digest', 'report', 'sparse', NULL])[1 + floor(random() * 7)::int] AS name,
             now() - random() * interval '3 days' AS created,
             (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'timed_out', 'cancelled',
                    'skipped', 'missed', 'running', 'retrying', 'enqueued'])[1 + floor(random() * 12)::int] AS state,
             exp(ln(0.0002) + random() * (ln(3600) - ln(0.0002))) AS seconds
      FROM generate_series(1, $1)) AS x
LEFT JOIN schedules s ON s.name = x.name
"""


async def random_runs(pool: Pool, count: int, seed: float = 0.25) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT setseed($1)", seed)
        await conn.execute(RANDOM_RUNS, count)


# the rollup follows every change --------------------------------------------------------------------------


async def test_the_rollup_holds_exactly_the_final_runs(pool: Pool) -> None:
    for name in ("etl", "digest", "report", "sparse"):
        await add_schedule(pool, name)
    await random_runs(pool, 3000)
    await assert_rollup_matches_runs(pool)
    assert await pool.fetchval("SELECT count(*) FROM run_stats WHERE grain = 'hour'") > 100

    # runs ending through the worker's own functions, one statement each
    for run_id in [row["id"] for row in await pool.fetch("SELECT id FROM runs WHERE state = 'enqueued' LIMIT 20")]:
        assert (await start_run(pool, run_id, None, "allow", timedelta(minutes=5))).started
        await finish_attempt(pool, run_id, RunState.SUCCEEDED if run_id % 2 else RunState.TIMED_OUT, attempt=1)
    await assert_rollup_matches_runs(pool)

    # changes of state, of timings, of name and of creation, from final to final and back; some that change
    # nothing the rollup holds (a heartbeat's, an outbox mark's)
    await pool.execute(
        "UPDATE runs SET state = 'cancelled', finished_at = now() WHERE state = 'retrying' AND id % 3 = 0"
    )
    await pool.execute("UPDATE runs SET finished_at = finished_at + interval '17 minutes' WHERE id % 5 = 0")
    await pool.execute("UPDATE runs SET started_at = NULL WHERE state = 'failed' AND id % 7 = 0")
    await pool.execute("UPDATE runs SET schedule_name = 'renamed' WHERE schedule_name = 'sparse' AND id % 2 = 0")
    await pool.execute("UPDATE runs SET created_at = created_at - interval '1 day' WHERE id % 11 = 0")
    await pool.execute("UPDATE runs SET state = 'running', finished_at = NULL WHERE state = 'failed' AND id % 4 = 0")
    await pool.execute("UPDATE runs SET alive_until = now() WHERE state = 'running'")
    await pool.execute("UPDATE runs SET followups_due = true WHERE id % 13 = 0")
    await assert_rollup_matches_runs(pool)

    # deletes: some, then every run of a name (its rows leave the rollup), then a schedule's (SET NULL)
    await pool.execute("DELETE FROM runs WHERE id % 9 = 0")
    await pool.execute("DELETE FROM runs WHERE schedule_name = 'digest'")
    await pool.execute("DELETE FROM schedules WHERE name = 'report'")
    await assert_rollup_matches_runs(pool)
    assert not await pool.fetchval("SELECT count(*) FROM run_stats WHERE schedule_name = 'digest'")

    await pool.execute("UPDATE runs SET state = 'failed' WHERE state = 'succeeded' AND id % 2 = 0")
    await pool.execute("TRUNCATE runs CASCADE")
    assert (
        await pool.fetchval("SELECT (SELECT count(*) FROM run_stats) + (SELECT count(*) FROM run_stats_pending)") == 0
    )


async def test_a_worker_finish_appends_one_change_and_the_tick_moves_it(pool: Pool) -> None:
    """The finish writes no run_stats row (no contention between workers on a busy schedule's rows); roll_up,
    which the tick calls, moves the change; a second roll_up at the same moment stands aside."""
    schedule_id = await add_schedule(pool, "etl")
    run_id = await pool.fetchval(
        "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
        " VALUES ($1, 'etl', 'probe', now(), 'manual', 'enqueued') RETURNING id",
        schedule_id,
    )
    assert (await start_run(pool, run_id, None, "allow", timedelta(minutes=5))).started
    await finish_attempt(pool, run_id, RunState.SUCCEEDED, attempt=1)
    assert await pool.fetchval("SELECT count(*) FROM run_stats") == 0
    assert [tuple(row) for row in await pool.fetch("SELECT schedule_name, state, n FROM run_stats_pending")] == [
        ("etl", "succeeded", 1)
    ]
    async with pool.acquire() as other, other.transaction():
        assert await roll_up(other) == 1  # holds the rollup's lock until it commits
        assert await roll_up(pool) == 0  # stands aside: nothing moved twice
    assert await pool.fetchval("SELECT succeeded FROM run_stats WHERE grain = 'hour'") == 1
    await assert_rollup_matches_runs(pool)


async def test_concurrent_writers_keep_the_rollup_exact(pool: Pool) -> None:
    """Runs of one schedule and hour ending in many transactions at once: each adds to the same rollup rows."""
    schedule_id = await add_schedule(pool, "etl")
    run_ids = [
        row["id"]
        for row in await pool.fetch(
            "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
            " SELECT $1, 'etl', 'probe', now(), 'manual', 'enqueued' FROM generate_series(1, 40) RETURNING id",
            schedule_id,
        )
    ]

    async def run(run_id: int) -> None:
        assert (await start_run(pool, run_id, None, "allow", timedelta(minutes=5))).started
        await finish_attempt(pool, run_id, RunState.SUCCEEDED, attempt=1)

    await asyncio.gather(*(run(run_id) for run_id in run_ids))
    await assert_rollup_matches_runs(pool)
    assert await pool.fetchval("SELECT succeeded FROM run_stats WHERE grain = 'day'") == 40


async def test_migration_0006_builds_the_rollup_from_the_runs_recorded_before_it(pg_admin_url: str) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(services.with_database(pg_admin_url, name))
    try:
        await conn.execute(
            "CREATE TABLE punchclock_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, file, text in available_migrations():
            if version < 6:
                await conn.execute(text)
                await conn.execute("INSERT INTO punchclock_migrations (version, name) VALUES ($1, $2)", version, file)
        await conn.execute("INSERT INTO schedules (name, actor, cron) VALUES ('etl', 'probe', '* * * * *')")
        await conn.execute("SELECT setseed(0.5)")
        await conn.execute(RANDOM_RUNS, 500)
        missed = await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'missed'")
        await conn.execute("UPDATE runs SET finished_at = NULL WHERE state IN ('missed', 'cancelled')")

        # 0006 first, then whatever later migrations there are
        assert (await migrate(conn))[:1] == ["0006_history_at_scale.sql"]
        assert missed > 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM runs WHERE finished_at IS NULL AND state IN"
                " ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')"
            )
            == 0
        )
        await assert_rollup_matches_runs(conn)
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_admin_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_duration_buckets_are_those_app_stats_reads(pool: Pool) -> None:
    """Bucket b holds [2^((b-1)/8), 2^(b/8)) ms: its middle, bucket_seconds(b), is within RELATIVE_ERROR of each."""
    seconds = [0.0, 0.0004, 0.001, 0.0011, 0.5, 1.0, 1.5, 59.9, 60.0, 3599.0, 86400.0 * 3, 1e6]
    rows = await pool.fetch(
        "SELECT s, punchclock_duration_bucket(now(), now() + s * interval '1 second') AS b FROM unnest($1::float8[]) s",
        seconds,
    )
    for row in rows:
        value, bucket = row["s"], row["b"]
        if value < 0.001:
            assert bucket == 0
        else:
            assert 2 ** ((bucket - 1) / 8) <= value * 1000 * (1 + 1e-9) and value * 1000 < 2 ** (bucket / 8)
            assert abs(bucket_seconds(bucket) / value - 1) <= RELATIVE_ERROR + 1e-9
    assert await pool.fetchval("SELECT punchclock_duration_bucket(NULL, now())") is None


# stats from the rollup equal stats from every run ----------------------------------------------------------


def window_starts(now: datetime) -> list[datetime]:
    """Window starts on both sides of day and hour boundaries (the rollup adds or takes away hours and runs), on
    them, and far back, from ``now``."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [now - timedelta(minutes=20), now - timedelta(hours=5), now - timedelta(days=5)]
    for day in (midnight - timedelta(days=1), midnight - timedelta(days=2)):
        for offset in (0, 5, -5, 25, -25, 35, 60, 6 * 60 + 20, -6 * 60 - 20, 11 * 60 + 50, 12 * 60 + 10):
            starts.append(day + timedelta(minutes=offset))
    return [start for start in starts if start < now]


def recent_of(rows: list[asyncpg.Record], name: str | None, start: datetime) -> list[float]:
    timed = [
        r
        for r in rows
        if r["schedule_name"] == name and r["created_at"] >= start and r["started_at"] and r["finished_at"]
    ]
    timed.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [(r["finished_at"] - r["started_at"]).total_seconds() for r in timed[:10]]


def by_name(rows: list[asyncpg.Record]) -> dict[str | None, asyncpg.Record]:
    return {row["schedule_name"]: row for row in rows}


@pytest.mark.parametrize("rounds", [0, 1, 100], ids=["nothing-rolled-up", "partly-rolled-up", "all-rolled-up"])
async def test_stats_from_the_rollup_equal_stats_from_every_run(pool: Pool, rounds: int) -> None:
    """Whatever part of the changes the tick has moved into run_stats, and with changes after it (runs ending,
    retried, deleted), stats read from the rollup are those read from every run."""
    for name in ("etl", "digest", "report", "sparse"):
        await add_schedule(pool, name)
    await random_runs(pool, 4000)
    await roll_up(pool, batch=1000, rounds=rounds)
    await pool.execute(
        "UPDATE runs SET state = 'cancelled', finished_at = now() WHERE state = 'running' AND id % 2 = 0"
    )
    await pool.execute("UPDATE runs SET state = 'retrying', finished_at = NULL WHERE state = 'failed' AND id % 3 = 0")
    await pool.execute("DELETE FROM runs WHERE id % 10 = 0")
    rows = await pool.fetch("SELECT id, schedule_name, created_at, started_at, finished_at FROM runs")
    kinds: set[bool] = set()
    async with pool.acquire() as conn, conn.transaction():
        now: datetime = await conn.fetchval("SELECT now()")  # the same now() for every query of the transaction
        db = Database(conn, "", [])
        for start in window_starts(now):
            since = now - start
            expected = {row["schedule_name"]: row for row in await conn.fetch(sql("cli_stats"), since)}
            exact = {row["schedule_name"]: row for row in await conn.fetch(sql("cli_stats_rollup"), since, None, 10**9)}
            approximate = {
                row["schedule_name"]: row for row in await conn.fetch(sql("cli_stats_rollup"), since, None, 0)
            }
            assert exact.keys() == expected.keys() == approximate.keys(), start
            for name, want in expected.items():
                got = exact[name]
                assert got["states"] == want["states"], (start, name)
                for key in ("p50", "p95"):
                    assert got[key] == (None if want[key] is None else pytest.approx(want[key], rel=1e-12)), key
                assert list(got["recent"]) == pytest.approx(recent_of(rows, name, start)), (start, name)
                histogram = dict(zip(approximate[name]["buckets"], approximate[name]["counts"], strict=True))
                assert sum(histogram.values()) == approximate[name]["timed"] == got["timed"]
                for fraction, value in ((0.5, want["p50"]), (0.95, want["p95"])):
                    estimate = histogram_percentile(histogram, fraction)
                    if value is None:
                        assert estimate is None
                    elif value >= 0.001:
                        assert abs(estimate / value - 1) <= RELATIVE_ERROR + 1e-9, (start, name, fraction)
                    else:
                        assert abs(estimate - value) <= 0.0005 + 1e-9
            # what the CLI reads: exact up to EXACT_UP_TO timed runs, estimated above, one schedule or all
            shown = {s.schedule: s for s in await schedule_stats(db, since)}
            for name, s in shown.items():
                assert s.approximate == (exact[name]["timed"] > EXACT_UP_TO)
                kinds.add(s.approximate)
                assert dict(s.states) == expected[name]["states"]
            for name in ("etl", "sparse", "nothing-like-it"):
                alone = await schedule_stats(db, since, name)
                assert alone == ([shown[name]] if name in shown else []), (start, name)
    assert kinds == {True, False}  # both kinds of percentiles were checked


# the CLI ---------------------------------------------------------------------------------------------------


async def insert_timed(pool: Pool, name: str, count: int) -> None:
    """``count`` succeeded runs of ``name`` created in the last hour, lasting 1, 2, ... seconds."""
    await pool.execute(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state, created_at, started_at, finished_at)"
        " SELECT $1, 'probe', now(), 'cron', 'succeeded', now() - interval '50 minutes', now() - interval '40 minutes',"
        "        now() - interval '40 minutes' + n * interval '1 second'"
        " FROM generate_series(1, $2) AS n",
        name,
        count,
    )


async def test_stats_of_one_schedule_and_estimated_percentiles(
    punchclock_env: dict[str, str], pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await insert_timed(pool, "busy", EXACT_UP_TO + 100)
    await insert_timed(pool, "quiet", 3)
    capsys.readouterr()

    assert await cli("stats", "--schedule", "quiet", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "schedule": "quiet",
        "since_seconds": 86400.0,
        "schedules": [
            {
                "schedule": "quiet",
                "runs": 3,
                "states": {"succeeded": 3},
                "success_rate": 1.0,
                "p50_seconds": 2.0,
                "p95_seconds": 2.9,
                "recent_seconds": [1.0, 2.0, 3.0],
                "sparkline": "▁▅█",
            }
        ],
    }

    assert await cli("stats", "--schedule", "busy", "--json") == 0
    (busy,) = json.loads(capsys.readouterr().out)["schedules"]
    # 1..200 s: percentile_cont gives 100.5 and 190.05; the estimates are within 4.4 % of those
    assert busy["approximate_percentiles"] is True
    assert math.isclose(busy["p50_seconds"], 100.5, rel_tol=RELATIVE_ERROR)
    assert math.isclose(busy["p95_seconds"], 190.05, rel_tol=RELATIVE_ERROR)
    assert busy["recent_seconds"] == [float(n) for n in range(191, 201)]

    assert await cli("stats") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-4:] == ["P50", "P95", "LAST", "10"]
    assert lines[2].split()[0] == "busy" and lines[2].split()[4].startswith("~")  # ~1m40s or so
    assert lines[3].split()[:5] == ["quiet", "3", "3", "100%", "2s"]

    assert await cli("stats", "--schedule", "nobody") == 0
    assert capsys.readouterr().out == 'no runs of "nobody" in the last 1d\n'
    assert await cli("stats", "--schedule", "nobody", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"schedule": "nobody", "since_seconds": 86400.0, "schedules": []}

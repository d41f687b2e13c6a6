"""Run history at 10 million runs: the CLI's reads, retention and what a run costs to keep (a script, not a test).

    python bench/history.py [--runs 10000000] [--schedules 2000] [--repeats 200] [--loaders 2] [--keep]
    python bench/history.py --runs 200000      # a quick check that the bench works (a minute); not run by CI

1. build: a fresh ``punchclock_history`` database (embedded in ``.punchclock/bench-pgdata`` unless
   ``PUNCHCLOCK_DATABASE_URL`` is set), migrated, then ``--schedules`` every-minute schedules and their runs, one
   per schedule and minute up to now (10 million: 3.5 days of 2,000 schedules, as the issue's 2.9 million a day),
   generated in SQL a few hours at a time on ``--loaders`` connections. The mix: 93 % succeeded (2 % of them after
   a retry), 2 % failed after 4 attempts, 0.5 % timed out, 0.2 % cancelled, 3.3 % skipped (naming the run before
   in blocked_by), 1 % missed, and runs still running at the end; durations log-normal around a median per
   schedule from 0.2 s to 2 minutes. Every run that started has its attempts; every 10th schedule notifies on
   failure (a notification per failed run), every 20th is a workflow (3 steps per run). The inserts go through
   the stats rollup's triggers like any other write, and the tick's rollup (``app.stats_rollup.roll_up``) moves
   their changes into run_stats; then VACUUM ANALYZE, as autovacuum would have by then;
2. size: bytes per run, heap and indexes of runs, run_attempts, run_steps, notifications and run_stats over the
   number of runs;
3. reads, each through the very function its CLI command calls (``fetch_listing``, ``fetch_detail``,
   ``schedule_stats``) on a connection of its own opened just before, as each CLI command opens one (the timing
   leaves out the connection and the process start-up, which would hide the query: they cost the same at any
   size), ``--repeats`` times with a random schedule or run each time, p50 / p95: ``runs list --schedule NAME``
   (default limit), ``runs show ID``, ``stats --since 7d --schedule NAME``, ``stats --since 7d`` for every
   schedule (a tenth as many times), and ``stats`` over every schedule with the window starting where the most
   rows are read (12 hour rows and 30 minutes of runs per schedule: see cli_stats_rollup.sql);
4. the worker's hot path: ``finish_attempt`` (one statement, its stats change appended inside it) on runs just
   started, then the tick's ``roll_up`` of those changes;
5. prune: the dry run's count, then ``app.retention.prune`` (what ``runs prune`` calls) of the oldest 15 % of the
   history, in batches of 5,000, while a tick (``app.clock.fire_due``, 100 schedules due, publishing to Dramatiq's
   in-memory broker: the database's share is what is measured) runs every half second on the same database;
   runs/s, and rows/s counting the attempts, steps and notifications deleted with them; the ticks' durations
   against ticks before the prune. Then a tick whose recovery sweep prunes one batch (``SWEEP_BATCH``).

Aims (the issue): list p95 <= 50 ms, show p95 <= 20 ms, stats for one schedule <= 100 ms and for all <= 1 s (both
p95), prune >= 50,000 rows/s, the tick not blocked while it runs. Exit status 1 only when a check fails (a read
returning the wrong rows, the rollup missing runs, prunable runs left). The database is dropped at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/history.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from app import retention  # noqa: E402
from app.cli.database import Database  # noqa: E402
from app.cli.runs import DEFAULT_LIMIT, fetch_detail, fetch_listing  # noqa: E402
from app.cli.stats import schedule_stats  # noqa: E402
from app.clock import fire_due  # noqa: E402
from app.db.pool import connect, create_pool  # noqa: E402
from app.db.queries import sql  # noqa: E402
from app.notify.store import create_notifications  # noqa: E402
from app.publisher import Publisher  # noqa: E402
from app.recovery import Sweep  # noqa: E402
from app.recovery import prune as prune_once  # noqa: E402
from app.runs import RunState, finish_attempt, start_run  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.stats_rollup import roll_up  # noqa: E402
from bench import harness  # noqa: E402

DATABASE = "punchclock_history"
WEEK = timedelta(days=7)
CHUNK_RUNS = 240_000  # runs per generating statement: a few hours of history
DUE_PER_TICK = 100
TICK_EVERY_S = 0.5
FINISHES = 300
PRUNED_SHARE = 0.15
AIM_LIST_MS, AIM_SHOW_MS, AIM_STATS_ONE_MS, AIM_STATS_ALL_MS = 50.0, 20.0, 100.0, 1000.0
AIM_PRUNE_ROWS = 50_000
TABLES = ("runs", "run_attempts", "run_steps", "notifications", "run_stats")

SCHEDULES = """
INSERT INTO schedules (name, actor, args, cron, notify, next_fire_at)
SELECT format('job-%s', lpad(s::text, 4, '0')), CASE WHEN s % 20 = 0 THEN 'run_workflow' ELSE 'probe' END,
       CASE WHEN s % 20 = 0 THEN '{"workflow": "daily_brief", "source": "https://example.com/feed.json"}'::jsonb
            ELSE jsonb_build_object('seconds', s % 40) END,
       '* * * * *',
       CASE WHEN s % 10 = 0 THEN ARRAY['slack:https://hooks.slack.com/services/T000/B000/XXXXXXXX'] ELSE '{}' END,
       TIMESTAMPTZ '2100-01-01 00:00:00+00'  -- not due: the bench's ticks make 100 at a time due
FROM generate_series(1, $1::int) AS s
"""

# Runs of minutes [$1, $2) of the history that starts at $4 and ends at $5, for $3 schedules with ids 1..$3: run id
# minute * $3 + schedule id, so that the other tables' rows are made from the runs by id range.
RUNS = """
INSERT INTO runs (id, schedule_id, schedule_name, actor, args, options, scheduled_for, trigger, state, attempts,
                  created_at, enqueued_at, started_at, finished_at, error, output, trace_id, blocked_by, alive_until)
OVERRIDING SYSTEM VALUE
SELECT id, sid, name, actor, args, options, at, 'cron', state,
       CASE state WHEN 'failed' THEN 4 WHEN 'skipped' THEN 0 WHEN 'missed' THEN 0
                  WHEN 'succeeded' THEN CASE WHEN u < 0.02 THEN 2 ELSE 1 END ELSE 1 END,
       created, CASE WHEN state <> 'missed' THEN created + interval '3 ms' END,
       CASE WHEN state NOT IN ('skipped', 'missed') THEN started END,
       CASE WHEN state IN ('skipped', 'missed') THEN created WHEN state = 'running' THEN NULL
            WHEN state = 'failed' THEN started + 4 * dur + interval '70 s'
            WHEN state = 'succeeded' AND u < 0.02 THEN started + 2 * dur + interval '10 s'
            ELSE started + dur END,
       CASE state
           WHEN 'failed' THEN 'ConnectionError: HTTPSConnectionPool(host=''api.example.com'', port=443): Max retries'
                              || ' exceeded with url: /v1/feed (Caused by NewConnectionError)'
           WHEN 'timed_out' THEN 'timed out after 25m (the schedule''s timeout)'
           WHEN 'cancelled' THEN 'cancelled by punchclock runs cancel'
           WHEN 'skipped' THEN 'skipped: run ' || (id - $3) || ' of the same lock (' || lock || ') was still running'
       END,
       CASE WHEN state = 'succeeded' THEN output END,
       md5(id::text),
       CASE WHEN state = 'skipped' AND id > $3 THEN id - $3 END,
       CASE WHEN state = 'running' THEN $5::timestamptz + interval '1 day' END
FROM (
    WITH s AS MATERIALIZED (
        SELECT id AS sid, name, actor, args, 'schedule:' || id AS lock,
               0.2 * power(600, ((id * 7919) % 2000) / 2000.0) AS median,
               jsonb_build_object('max_retries', 3, 'min_backoff', 10000, 'max_backoff', 300000,
                                  'time_limit', 1500000, 'schedule_id', id, 'overlap', 'skip', 'lock_key', NULL,
                                  'retry_timeouts', false,
                                  'traceparent', '00-' || md5(name) || '-' || left(md5(actor || name), 16) || '-01')
                   AS options,
               CASE WHEN actor = 'run_workflow'
                    THEN jsonb_build_object('report', repeat('Markets were calm; ', 8), 'tokens', 512) END AS output
        FROM schedules
    )
    SELECT m * $3::bigint + s.sid AS id, s.*, at, created, started, dur, u,
           CASE WHEN started + dur > $5::timestamptz THEN 'running'
                WHEN u < 0.930 THEN 'succeeded' WHEN u < 0.950 THEN 'failed' WHEN u < 0.955 THEN 'timed_out'
                WHEN u < 0.957 THEN 'cancelled' WHEN u < 0.990 THEN 'skipped' ELSE 'missed' END AS state
    FROM generate_series($1::int, $2::int - 1) AS m
    CROSS JOIN LATERAL (SELECT $4::timestamptz + m * interval '1 minute' AS at) AS t
    CROSS JOIN s
    CROSS JOIN LATERAL (
        SELECT random() AS u,
               t.at + random() * interval '200 ms' AS created,
               t.at + interval '10 ms' + random() * interval '300 ms' AS started,
               s.median * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) * interval '1 s' AS dur
    ) AS r
    ORDER BY m, s.sid
) AS g
"""

ATTEMPTS = """
INSERT INTO run_attempts (run_id, attempt, started_at, finished_at, state, error, retry_delay_ms)
SELECT r.id, a,
       r.started_at + (a - 1) * span / r.attempts,
       CASE WHEN r.state = 'running' THEN NULL
            ELSE r.started_at + a * span / r.attempts - interval '10 ms' * (r.attempts - a) END,
       CASE WHEN a < r.attempts THEN 'retrying' ELSE r.state END,
       CASE WHEN a < r.attempts THEN 'ConnectionError: connection refused' ELSE r.error END,
       CASE WHEN a < r.attempts THEN 10000 * a END
FROM runs r
CROSS JOIN LATERAL (SELECT coalesce(r.finished_at, now()) - r.started_at AS span) AS sp
CROSS JOIN LATERAL generate_series(1, r.attempts) AS a
WHERE r.id BETWEEN $1 AND $2 AND r.started_at IS NOT NULL
"""

NOTIFICATIONS = """
INSERT INTO notifications (run_id, target, event, state, attempts, created_at, sent_at)
SELECT r.id, 'slack:https://hooks.slack.com/***', 'failure', 'sent', 1, r.finished_at, r.finished_at + interval '1 s'
FROM runs r
WHERE r.id BETWEEN $1 AND $2 AND r.state IN ('failed', 'timed_out') AND r.schedule_id % 10 = 0
"""

STEPS = """
INSERT INTO run_steps (run_id, attempt, seq, name, started_at, finished_at, status, input_tokens, output_tokens)
SELECT r.id, r.attempts, k, (ARRAY['fetch', 'chat', 'remember'])[k],
       r.started_at + (k - 1) * (coalesce(r.finished_at, now()) - r.started_at) / 3,
       r.started_at + k * (coalesce(r.finished_at, now()) - r.started_at) / 3,
       'ok', CASE k WHEN 2 THEN 420 ELSE 0 END, CASE k WHEN 2 THEN 180 ELSE 0 END
FROM runs r CROSS JOIN generate_series(1, 3) AS k
WHERE r.id BETWEEN $1 AND $2 AND r.actor = 'run_workflow' AND r.started_at IS NOT NULL
"""

# Schedules [$1, $2] due at $3, every other one pushed back to 2100 (those the tick before fired wait a minute).
DUE = """
UPDATE schedules
SET next_fire_at = CASE WHEN id BETWEEN $1 AND $2 THEN $3::timestamptz ELSE TIMESTAMPTZ '2100-01-01 00:00:00+00' END
WHERE id BETWEEN $1 AND $2 OR next_fire_at < TIMESTAMPTZ '2100-01-01 00:00:00+00'
"""


@dataclass
class Results(harness.Checks):
    runs: int = 0
    build_s: float = 0.0
    bytes: dict[str, tuple[int, int]] = field(default_factory=dict)
    reads: dict[str, list[float]] = field(default_factory=dict)
    edge_since: timedelta | None = None
    finish_us: list[float] = field(default_factory=list)
    rollup_ms: float = 0.0
    count_ms: float = 0.0
    prunable: int = 0
    pruned: int = 0
    pruned_rows: int = 0
    prune_s: float = 0.0
    ticks_before_ms: list[float] = field(default_factory=list)
    ticks_during_ms: list[float] = field(default_factory=list)
    sweep_tick_ms: list[float] = field(default_factory=list)
    sweep_pruned: list[int] = field(default_factory=list)


@dataclass
class Bench:
    args: argparse.Namespace
    url: str
    pool: Any  # asyncpg pool
    publisher: Publisher
    start: datetime = datetime.min
    end: datetime = datetime.min
    instant: datetime = datetime.min  # the next instant the bench's ticks fire (past the history's end)
    ticks: int = 0
    results: Results = field(default_factory=Results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000_000, help="runs in the history (rounded up to minutes)")
    parser.add_argument("--schedules", type=int, default=2_000, help="every-minute schedules")
    parser.add_argument("--repeats", type=int, default=200, help="timings per read (stats of all: a tenth)")
    parser.add_argument("--loaders", type=int, default=2, help="connections generating the history")
    parser.add_argument("--keep", action="store_true", help=f"leave the {DATABASE} database behind")
    args = parser.parse_args()
    logging.getLogger("app").setLevel(logging.WARNING)  # a line per fired run would cost more than the work
    results = asyncio.run(run(args, Settings.from_env()))
    raise SystemExit(1 if results.failures else 0)


async def run(args: argparse.Namespace, settings: Settings) -> Results:
    admin_url = harness.admin_database_url(settings.database_url)
    url = harness.with_path(admin_url, DATABASE)
    print(f"database {DATABASE} on {harness.redact(admin_url)}: {args.runs:,} runs of {args.schedules:,} schedules")
    await harness.recreate_database(admin_url, DATABASE, track_functions=True)
    broker = StubBroker()
    dramatiq.actor(actor_name="probe", broker=broker)(lambda **kwargs: None)
    dramatiq.actor(actor_name="run_workflow", broker=broker)(lambda **kwargs: None)
    pool = await create_pool(url, 4)
    bench = Bench(args, url, pool, Publisher(broker, threads=1))
    try:
        await build(bench)
        await sizes(bench)
        await reads(bench)
        await finish_cost(bench)
        await prune(bench)
    finally:
        await pool.close()
        broker.close()
        if not args.keep:
            await harness.drop_database(admin_url, DATABASE)
    summary(bench)
    return bench.results


# 1. build --------------------------------------------------------------------------------------------------


async def build(bench: Bench) -> None:
    args, r = bench.args, bench.results
    minutes = -(-args.runs // args.schedules)
    chunk = max(1, CHUNK_RUNS // args.schedules)
    print(f"\n== build: {minutes:,} minutes x {args.schedules:,} schedules, {chunk} minutes per statement")
    started = time.perf_counter()
    async with bench.pool.acquire() as conn:
        await conn.execute(SCHEDULES, args.schedules)
        bench.end = await conn.fetchval("SELECT date_trunc('minute', now())")
    bench.start = bench.end - timedelta(minutes=minutes)
    bench.instant = bench.end + timedelta(days=1)
    todo: asyncio.Queue[int] = asyncio.Queue()
    for first in range(0, minutes, chunk):
        todo.put_nowait(first)
    done = 0

    async def loader() -> None:
        nonlocal done
        conn = await connect(bench.url)
        try:
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("SET work_mem = '256MB'")
            while not todo.empty():
                first = todo.get_nowait()
                last = min(minutes, first + chunk)
                async with conn.transaction():
                    await conn.execute(RUNS, first, last, args.schedules, bench.start, bench.end)
                    low, high = first * args.schedules + 1, last * args.schedules
                    for statement in (ATTEMPTS, NOTIFICATIONS, STEPS):
                        await conn.execute(statement, low, high)
                done += (last - first) * args.schedules
                seconds = time.perf_counter() - started
                print(f"  {done:,} runs in {seconds:.0f} s ({done / seconds:,.0f} runs/s)", flush=True)
        finally:
            await conn.close()

    await asyncio.gather(*(loader() for _ in range(args.loaders)))
    async with bench.pool.acquire() as conn:
        await conn.execute("SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT max(id) FROM runs))")
        rolled_up = time.perf_counter()
        changes = 0
        while moved := await roll_up(conn):
            changes += moved
        print(f"  stats rollup: {changes:,} changes moved in {time.perf_counter() - rolled_up:.1f} s")
        await conn.execute("VACUUM ANALYZE")
        r.runs = await conn.fetchval("SELECT count(*) FROM runs")
        final = await conn.fetchval(
            "SELECT count(*) FROM runs WHERE state IN"
            " ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')"
        )
        rolled = await conn.fetchval(
            "SELECT sum(succeeded + failed + timed_out + cancelled + skipped + missed) FROM run_stats"
            " WHERE grain = 'day'"
        )
        states = await conn.fetch("SELECT state, count(*) AS n FROM runs GROUP BY 1 ORDER BY 2 DESC")
    r.build_s = time.perf_counter() - started
    print(f"{r.runs:,} runs in {r.build_s:.0f} s: " + ", ".join(f"{row['state']} {row['n']:,}" for row in states))
    r.check(rolled == final, f"the stats rollup holds every final run ({rolled:,} of {final:,})")


# 2. size ---------------------------------------------------------------------------------------------------


async def sizes(bench: Bench) -> None:
    r = bench.results
    async with bench.pool.acquire() as conn:
        r.bytes = await harness.relation_bytes(conn, TABLES)
        indexes = await conn.fetch(
            "SELECT indexrelname AS name, pg_relation_size(indexrelid) AS size FROM pg_stat_user_indexes"
            " WHERE relname = 'runs' ORDER BY 2 DESC"
        )
    print("\n== bytes per run (heap + TOAST / indexes)")
    for table, (heap, index) in r.bytes.items():
        print(f"  {table:<14} {heap / r.runs:7.1f} / {index / r.runs:6.1f}")
    print("  runs' indexes: " + ", ".join(f"{row['name']} {row['size'] / r.runs:.1f}" for row in indexes))


# 3. reads --------------------------------------------------------------------------------------------------


async def timed(url: str, repeats: int, work: Callable[[Any, int], Awaitable[None]]) -> list[float]:
    """Milliseconds of ``work(connection, i)`` for i in 0..repeats-1, each on a connection opened just before."""
    timings = []
    for i in range(repeats):
        conn = await connect(url)
        try:
            started = time.perf_counter()
            await work(conn, i)
            timings.append((time.perf_counter() - started) * 1000)
        finally:
            await conn.close()
    return timings


async def reads(bench: Bench) -> None:
    args, r = bench.args, bench.results
    draw = random.Random(42)
    names = [f"job-{draw.randint(1, args.schedules):04d}" for _ in range(args.repeats)]
    async with bench.pool.acquire() as conn:
        last = await conn.fetchval("SELECT max(id) FROM runs")
        plan = await conn.fetch("EXPLAIN " + sql("list_schedule_runs"), "job-0001", None, DEFAULT_LIMIT)
    run_ids = [draw.randint(1, last) for _ in range(args.repeats)]
    r.check(any("runs_by_schedule_name" in row[0] for row in plan), "runs list --schedule uses runs_by_schedule_name")
    wrong: list[str] = []

    async def listing(conn: Any, i: int) -> None:
        runs, _ = await fetch_listing(conn, schedule=names[i], state=None, limit=DEFAULT_LIMIT)
        if len(runs) != min(DEFAULT_LIMIT, r.runs // args.schedules) or {run.schedule_name for run in runs} != {
            names[i]
        }:
            wrong.append(f"runs list --schedule {names[i]}")

    async def show(conn: Any, i: int) -> None:
        detail = await fetch_detail(conn, run_ids[i])
        if detail.run.id != run_ids[i] or (detail.run.started_at is not None and not detail.attempts):
            wrong.append(f"runs show {run_ids[i]}")

    async def stats_one(conn: Any, i: int) -> None:
        shown = await schedule_stats(Database(conn, bench.url, []), WEEK, names[i])
        if [s.schedule for s in shown] != [names[i]]:
            wrong.append(f"stats --schedule {names[i]}")

    def stats_all(since: timedelta) -> Callable[[Any, int], Awaitable[None]]:
        async def work(conn: Any, i: int) -> None:
            shown = await schedule_stats(Database(conn, bench.url, []), since)
            if len(shown) != args.schedules:
                wrong.append(f"stats --since {since}: {len(shown)} schedules")

        return work

    print(f"\n== reads, each on a new connection: {args.repeats} times (stats of all: {max(10, args.repeats // 10)})")
    r.reads["list"] = await timed(bench.url, args.repeats, listing)
    r.reads["show"] = await timed(bench.url, args.repeats, show)
    r.reads["stats one"] = await timed(bench.url, args.repeats, stats_one)
    r.reads["stats all"] = await timed(bench.url, max(10, args.repeats // 10), stats_all(WEEK))
    # The window start that reads the most: just after half past 11 on a day of the history, so that the nearest
    # day boundary is that midnight (12 hour rows taken away) and the nearest hour boundary 30 minutes after it.
    now = await bench.pool.fetchval("SELECT now()")
    midnight = bench.start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if midnight + timedelta(hours=11, minutes=30) < now:
        r.edge_since = now - (midnight + timedelta(hours=11, minutes=30, seconds=1))
        r.reads["stats edge"] = await timed(bench.url, max(10, args.repeats // 10), stats_all(r.edge_since))
    for what, timings in r.reads.items():
        p50, p95 = harness.p50_p95(timings)
        print(f"  {what:<11} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {max(timings):7.1f} ms")
    r.check(not wrong, "every read returned its schedule's or run's rows" + (f" (not: {wrong[:3]})" if wrong else ""))


# 4. the worker's hot path ----------------------------------------------------------------------------------


async def finish_cost(bench: Bench) -> None:
    """``finish_attempt`` on runs just started, one run of each of ``FINISHES`` schedules per round, each finish its
    own transaction, as workers end them; then the tick's ``roll_up`` of the stats changes they appended."""
    r = bench.results
    rounds = 6
    print(f"\n== finish_attempt: {rounds} rounds of {FINISHES} runs, then the stats rollup of their changes")
    async with bench.pool.acquire() as conn:
        for _ in range(rounds):
            ids = [
                row["id"]
                for row in await conn.fetch(
                    "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state)"
                    " SELECT id, name, actor, now(), 'manual', 'enqueued' FROM schedules ORDER BY id LIMIT $1"
                    " RETURNING id",
                    FINISHES,
                )
            ]
            for i, run_id in enumerate(ids):
                await start_run(conn, run_id, None, "allow", timedelta(minutes=5))
                state = RunState.SUCCEEDED if i % 10 else RunState.FAILED
                started = time.perf_counter()
                await finish_attempt(conn, run_id, state, attempt=1, output={"ok": True})
                r.finish_us.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        moved = await roll_up(conn)
        r.rollup_ms = (time.perf_counter() - started) * 1000
    p50, p95 = harness.p50_p95(r.finish_us)
    print(f"  finish_attempt p50 {p50:6.0f} us  p95 {p95:6.0f} us; roll_up of {moved:,} changes {r.rollup_ms:.0f} ms")
    r.check(moved == rounds * FINISHES, f"the tick's rollup moved every finish's change ({moved:,})")


# 5. prune --------------------------------------------------------------------------------------------------


async def tick(bench: Bench, recovery: Sweep | None = None) -> float:
    """One ``fire_due`` with the next ``DUE_PER_TICK`` schedules due at the bench's next instant: milliseconds."""
    first = bench.ticks * DUE_PER_TICK % bench.args.schedules + 1
    bench.ticks += 1
    bench.instant += timedelta(minutes=1)
    await bench.pool.execute(DUE, first, first + DUE_PER_TICK - 1, bench.instant)
    started = time.perf_counter()
    await fire_due(bench.pool, bench.publisher, bench.instant + timedelta(seconds=1), recovery=recovery)
    return (time.perf_counter() - started) * 1000


async def deleted_rows(conn: Any) -> int:
    """Rows in the tables a prune deletes from."""
    total: int = await conn.fetchval(
        "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM run_attempts) + (SELECT count(*) FROM run_steps)"
        " + (SELECT count(*) FROM notifications)"
    )
    return total


async def prune(bench: Bench) -> None:
    r = bench.results
    cutoff = bench.start + (bench.end - bench.start) * PRUNED_SHARE
    print(f"\n== prune: runs finished before {cutoff:%Y-%m-%d %H:%M} UTC (the oldest {PRUNED_SHARE:.0%})")
    async with bench.pool.acquire() as conn:
        started = time.perf_counter()
        r.prunable = await retention.count_prunable(conn, cutoff)
        r.count_ms = (time.perf_counter() - started) * 1000
        rows_before = await deleted_rows(conn)
    print(f"  dry run: {r.prunable:,} runs in {r.count_ms:,.0f} ms")
    for _ in range(10):
        r.ticks_before_ms.append(await tick(bench))

    def progress(p: retention.Progress) -> None:
        print(f"  pruned {p.deleted:,} runs so far ({p.rate:,.0f} runs/s)", flush=True)

    conn = await connect(bench.url)
    try:
        task = asyncio.create_task(retention.prune(conn, cutoff, batch=retention.DEFAULT_BATCH, report=progress))
        while not task.done():
            r.ticks_during_ms.append(await tick(bench))
            await asyncio.wait([task], timeout=TICK_EVERY_S)
        done = task.result()
        left = await retention.count_prunable(conn, cutoff)
        rows_after = await deleted_rows(conn)
    finally:
        await conn.close()
    r.pruned, r.prune_s = done.deleted, done.seconds
    fired = (len(r.ticks_before_ms) + len(r.ticks_during_ms)) * DUE_PER_TICK
    r.pruned_rows = rows_before + fired - rows_after
    print(
        f"  {r.pruned:,} runs ({r.pruned_rows:,} rows with their attempts, steps and notifications) in"
        f" {r.prune_s:.1f} s; {len(r.ticks_during_ms)} ticks meanwhile"
    )
    r.check(left == 0 and r.pruned >= r.prunable, f"nothing prunable left ({left}), {r.pruned:,} >= {r.prunable:,}")

    # The sweep's own step: one batch per tick, of the next oldest runs.
    kept_for = await bench.pool.fetchval("SELECT now()") - (bench.start + (bench.end - bench.start) * 0.3)
    recovery = Sweep(
        republish_after=timedelta(minutes=10),
        create_notifications=create_notifications,
        send_notification=lambda notification_id: None,
        retention=kept_for,
    )
    for _ in range(5):
        before = await bench.pool.fetchval("SELECT count(*) FROM runs")
        r.sweep_tick_ms.append(await tick(bench, recovery))
        r.sweep_pruned.append(before + DUE_PER_TICK - await bench.pool.fetchval("SELECT count(*) FROM runs"))
    print(
        "  ticks whose sweep pruned "
        + ", ".join(f"{n:,} runs: {ms:.0f} ms" for n, ms in zip(r.sweep_pruned, r.sweep_tick_ms, strict=True))
    )
    pruned = await prune_once(bench.pool, recovery)
    r.check(pruned <= retention.SWEEP_BATCH, f"a tick prunes at most one batch ({pruned:,})")


# summary ---------------------------------------------------------------------------------------------------


def summary(bench: Bench) -> None:
    r, args = bench.results, bench.args

    def read(what: str, label: str, aim: float | None) -> tuple[str, str, str]:
        p50, p95 = harness.p50_p95(r.reads[what])
        note = harness.verdict(p95 <= aim, f"p95 <= {aim:,.0f} ms") if aim is not None else "no aim: the worst window"
        return (f"{label}: p50 / p95", f"{p50:.1f} / {p95:.1f} ms", note)

    heap = sum(h for h, _ in r.bytes.values())
    index = sum(i for _, i in r.bytes.values())
    runs_heap, runs_index = r.bytes["runs"]
    rows = [
        (f"history: {r.runs:,} runs of {args.schedules:,} schedules", f"{r.build_s:.0f} s", "to build"),
        (
            "bytes per run: all tables / runs alone",
            f"{(heap + index) / r.runs:,.0f} / {(runs_heap + runs_index) / r.runs:,.0f} B",
            f"heap {heap / r.runs:,.0f} + indexes {index / r.runs:,.0f}; runs: {runs_heap / r.runs:,.0f} +"
            f" {runs_index / r.runs:,.0f}; run_stats {sum(r.bytes['run_stats']) / r.runs:.1f}",
        ),
        read("list", "runs list --schedule NAME", AIM_LIST_MS),
        read("show", "runs show ID", AIM_SHOW_MS),
        read("stats one", "stats --since 7d --schedule NAME", AIM_STATS_ONE_MS),
        read("stats all", f"stats --since 7d, all {args.schedules:,}", AIM_STATS_ALL_MS),
    ]
    if "stats edge" in r.reads and r.edge_since is not None:
        rows.append(read("stats edge", f"stats --since {r.edge_since.total_seconds() / 3600:.1f}h, all", None))
    finish_p50, finish_p95 = harness.p50_p95(r.finish_us)
    rows.append(
        (
            "finish_attempt p50 / p95",
            f"{finish_p50:,.0f} / {finish_p95:,.0f} us",
            f"its stats change appended in the same round trip; the tick moved {len(r.finish_us):,} in"
            f" {r.rollup_ms:,.0f} ms",
        )
    )
    runs_rate, rows_rate = r.pruned / r.prune_s, r.pruned_rows / r.prune_s
    rows.append(
        (
            f"prune: {r.pruned:,} runs, batches of {retention.DEFAULT_BATCH:,}",
            f"{rows_rate:,.0f} rows/s",
            harness.verdict(rows_rate >= AIM_PRUNE_ROWS, f">= {AIM_PRUNE_ROWS:,} rows/s")
            + f"; {runs_rate:,.0f} runs/s"
            + (" (runs alone: also met)" if runs_rate >= AIM_PRUNE_ROWS else " (runs alone: below)"),
        )
    )
    rows.append(("prune --dry-run count", f"{r.count_ms:,.0f} ms", f"{r.prunable:,} runs"))
    before_p50, during_p50 = statistics.median(r.ticks_before_ms), statistics.median(r.ticks_during_ms)
    rows.append(
        (
            f"tick ({DUE_PER_TICK} due) before / while pruning, p50",
            f"{before_p50:.0f} / {during_p50:.0f} ms",
            f"max while pruning {max(r.ticks_during_ms):.0f} ms over {len(r.ticks_during_ms)} ticks",
        )
    )
    rows.append(
        (
            "tick whose sweep prunes a batch, p50",
            f"{statistics.median(r.sweep_tick_ms):.0f} ms",
            f"runs pruned per tick: {', '.join(f'{n:,}' for n in r.sweep_pruned)}",
        )
    )
    harness.print_summary(rows)
    if r.failures:
        print("checks failed: " + "; ".join(r.failures))


if __name__ == "__main__":
    main()

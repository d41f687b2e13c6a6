"""fire_due on the real PostgreSQL and RabbitMQ: exactly once, misfire policies, the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.clock import fire_due, jitter_ms
from app.misfire import Misfire
from app.publisher import Publisher, PublishOutcome
from app.schedule import Schedule
from app.schedule_store import save_schedule
from tests.conftest import drain_queue

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def add(pool: asyncpg.Pool[Any], name: str, *, now: datetime = T0, **fields: Any) -> None:
    schedule = Schedule(name=name, actor="probe", cron=fields.pop("cron", "* * * * *"), **fields)
    async with pool.acquire() as conn:
        await save_schedule(conn, schedule.validated({"probe"}), source="cli", now=now)


async def runs_by_state(pool: asyncpg.Pool[Any], name: str) -> dict[str, list[datetime]]:
    rows = await pool.fetch(
        "SELECT state, scheduled_for FROM runs WHERE schedule_name = $1 ORDER BY scheduled_for", name
    )
    found: dict[str, list[datetime]] = {}
    for row in rows:
        found.setdefault(row["state"], []).append(row["scheduled_for"])
    return found


async def test_a_thousand_schedules_fire_exactly_once_under_racing_ticks(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO schedules (name, actor, cron, next_fire_at, args)"
            " SELECT 'every-minute-' || i, 'probe', '* * * * *', $1, jsonb_build_object('i', i)"
            " FROM generate_series(1, 1000) AS i",
            T0 + timedelta(minutes=1),
        )
    now = T0 + timedelta(minutes=1, seconds=1)

    reports = await asyncio.gather(*(fire_due(pool, rabbit_publisher, now, batch=100) for _ in range(4)))
    reports += [await fire_due(pool, rabbit_publisher, now, batch=100) for _ in range(2)]

    assert sum(r.fired for r in reports) == 1000
    assert sum(r.published for r in reports) == 1000
    states = await pool.fetch("SELECT state, count(*) AS n FROM runs GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"enqueued": 1000}
    assert await pool.fetchval("SELECT count(DISTINCT schedule_id) FROM runs") == 1000
    assert (
        await pool.fetchval("SELECT count(*) FROM schedules WHERE next_fire_at = $1", T0 + timedelta(minutes=2)) == 1000
    )
    messages = drain_queue(clean_queues)
    assert len(messages) == 1000
    run_ids = {m["options"]["run_id"] for m in messages}
    assert run_ids == {r["id"] for r in await pool.fetch("SELECT id FROM runs")}
    assert all(m["actor_name"] == "probe" and m["options"]["max_retries"] == 3 for m in messages)


@pytest.mark.parametrize(
    ("misfire", "window", "fired", "missed"),
    [
        (Misfire.SKIP, timedelta(hours=1), [], list(range(1, 11))),
        (Misfire.LATEST, timedelta(hours=1), [10], list(range(1, 10))),
        (Misfire.ALL, timedelta(hours=1), list(range(1, 11)), []),
        (Misfire.ALL, timedelta(minutes=5), [6, 7, 8, 9, 10], [1, 2, 3, 4, 5]),
    ],
)
async def test_misfire_after_ten_minutes_down(
    pool: asyncpg.Pool[Any],
    rabbit_publisher: Publisher,
    clean_queues: str,
    misfire: Misfire,
    window: timedelta,
    fired: list[int],
    missed: list[int],
) -> None:
    await add(pool, "minutely", misfire=misfire, catchup_window=window)  # next fire 12:01
    # The clock was down from 12:00:30; it comes back at 12:10:45: instants 12:01 ... 12:10 were never ticked.
    report = await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=10, seconds=45))

    at = [T0 + timedelta(minutes=m) for m in range(11)]
    runs = await runs_by_state(pool, "minutely")
    assert runs.get("enqueued", []) == [at[m] for m in fired]
    assert runs.get("missed", []) == [at[m] for m in missed]
    assert (report.fired, report.missed) == (len(fired), len(missed))
    assert len(drain_queue(clean_queues)) == len(fired)
    assert await pool.fetchval("SELECT next_fire_at FROM schedules") == T0 + timedelta(minutes=11)


class CrashingPublisher(Publisher):
    """Stands in for a clock process that dies after committing its runs and before publishing them."""

    def publish(self, runs: Any) -> PublishOutcome:
        return PublishOutcome(error=ConnectionError("clock process died before publishing"))


async def test_runs_committed_but_never_published_are_sent_by_the_next_tick_once(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    await add(pool, "minutely")
    now = T0 + timedelta(minutes=1, seconds=2)
    with pytest.raises(ConnectionError):
        await fire_due(pool, CrashingPublisher(rabbit_publisher.broker, threads=1), now)
    assert await runs_by_state(pool, "minutely") == {"scheduled": [T0 + timedelta(minutes=1)]}
    assert drain_queue(clean_queues) == []

    first = await fire_due(pool, rabbit_publisher, now + timedelta(seconds=60))
    second = await fire_due(pool, rabbit_publisher, now + timedelta(seconds=61))

    assert (first.fired, first.published) == (1, 2)  # 12:02 fires now; 12:01 comes out of the outbox
    assert (second.fired, second.published) == (0, 0)
    messages = drain_queue(clean_queues)
    assert sorted(m["options"]["run_id"] for m in messages) == sorted(
        r["id"] for r in await pool.fetch("SELECT id FROM runs")
    )
    assert len(messages) == 2


async def test_a_broker_failure_mid_batch_keeps_what_was_sent(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    for i in range(5):
        await add(pool, f"s{i}")

    class FailsAfterTwo(Publisher):
        def publish(self, runs: Any) -> PublishOutcome:
            outcome = rabbit_publisher.publish(runs[:2])
            outcome.error = ConnectionError("broker went away")
            return outcome

    with pytest.raises(ConnectionError):
        await fire_due(pool, FailsAfterTwo(rabbit_publisher.broker, threads=1), T0 + timedelta(minutes=1))
    states = await pool.fetch("SELECT state, count(*) AS n FROM runs GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"enqueued": 2, "scheduled": 3}

    await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=1, seconds=5))
    assert len(drain_queue(clean_queues)) == 5
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE state = 'enqueued'") == 5


async def test_a_run_whose_actor_is_gone_fails_with_a_clear_error(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    await add(pool, "old")
    await pool.execute("UPDATE schedules SET actor = 'removed_actor'")
    report = await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=1))
    assert (report.fired, report.published) == (1, 0)
    row = await pool.fetchrow("SELECT state, error FROM runs")
    assert row["state"] == "failed"
    assert 'actor "removed_actor" is not registered' in row["error"]
    assert drain_queue(clean_queues) == []


async def test_paused_schedules_do_not_fire(pool: asyncpg.Pool[Any], rabbit_publisher: Publisher) -> None:
    await add(pool, "paused", paused=True)
    report = await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=5))
    assert report.fired == report.missed == 0


async def test_jitter_is_drawn_once_per_run_and_delays_its_message(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    await add(pool, "jittery", jitter=timedelta(seconds=30))
    await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=1))
    run = await pool.fetchrow("SELECT id, delay_ms FROM runs")
    assert 0 <= run["delay_ms"] < 30_000
    # Delayed messages wait on Dramatiq's delay queue with their due time.
    delayed = drain_queue(clean_queues, "default.DQ")
    assert [m["options"]["run_id"] for m in delayed] == [run["id"]]
    assert delayed[0]["options"]["eta"] - delayed[0]["message_timestamp"] >= run["delay_ms"] - 1_000

    # Published again (the outbox after a crash): the same delay, not a new draw.
    await pool.execute("UPDATE runs SET state = 'scheduled'")
    await fire_due(pool, rabbit_publisher, T0 + timedelta(minutes=1, seconds=1))
    assert await pool.fetchval("SELECT delay_ms FROM runs") == run["delay_ms"]
    assert len(drain_queue(clean_queues, "default.DQ")) == 1


def test_jitter_ms_scales_the_draw() -> None:
    assert jitter_ms(timedelta(seconds=30), 0.0) == 0
    assert jitter_ms(timedelta(seconds=30), 0.5) == 15_000
    assert jitter_ms(timedelta(0), 0.99) == 0


async def test_a_cron_schedule_with_upstreams_fires_at_its_cron_only_when_they_succeeded(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    # "load" at 02:00, "report" at 06:00 after it; instants are UTC.
    await add(pool, "load", cron="0 2 * * *")
    await add(pool, "report", cron="0 6 * * *", after=("load",), catchup_window=timedelta(hours=2))
    day = T0.replace(hour=0)

    async def tick(at: datetime) -> None:
        await fire_due(pool, rabbit_publisher, at, batch=10)

    async def load_run(state: str) -> None:
        await pool.execute(
            "UPDATE runs SET state = $1, output = '{\"rows\": 3}',"
            " finished_at = CASE WHEN $1 = 'running' THEN NULL ELSE now() END WHERE schedule_name = 'load'",
            state,
        )

    await pool.execute("UPDATE schedules SET next_fire_at = $1", day + timedelta(days=1, hours=2))
    await pool.execute("UPDATE schedules SET next_fire_at = $1 WHERE name = 'report'", day + timedelta(days=1, hours=6))
    await tick(day + timedelta(days=1, hours=2))  # load fires
    await load_run("running")
    await tick(day + timedelta(days=1, hours=6))  # report's instant: load still running, so it waits
    assert await runs_by_state(pool, "report") == {}
    assert await pool.fetchval("SELECT next_fire_at FROM schedules WHERE name = 'report'") == day + timedelta(
        days=1, hours=6
    )
    await load_run("succeeded")
    await tick(day + timedelta(days=1, hours=6, minutes=30))  # within the catchup window: it fires now
    report = await pool.fetchrow("SELECT * FROM runs WHERE schedule_name = 'report'")
    assert (report["state"], report["trigger"]) == ("enqueued", "cron")
    assert report["scheduled_for"] == day + timedelta(days=1, hours=6)
    assert report["args"]["upstream"] == {"load": {"rows": 3}}
    # The dependency path does not also fire it: its cron decides when.
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE schedule_name = 'report'") == 1

    # Next day the load fails: the report's instant is recorded skipped, naming the failed run.
    await tick(day + timedelta(days=2, hours=2))
    failed = await pool.fetchval(
        "UPDATE runs SET state = 'failed', finished_at = now() WHERE schedule_name = 'load' AND scheduled_for = $1"
        " RETURNING id",
        day + timedelta(days=2, hours=2),
    )
    await tick(day + timedelta(days=2, hours=6))
    skipped = await pool.fetchrow(
        "SELECT * FROM runs WHERE schedule_name = 'report' AND scheduled_for = $1", day + timedelta(days=2, hours=6)
    )
    assert (skipped["state"], skipped["blocked_by"]) == ("skipped", failed)
    assert skipped["error"] == f'skipped: upstream "load" run {failed} failed'
    messages = drain_queue(clean_queues)
    assert sorted(m["actor_name"] for m in messages) == ["probe"] * 3  # two loads and one report


async def test_a_tick_moves_the_stats_changes_into_the_rollup(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher, clean_queues: str
) -> None:
    """Finishes append their stats changes; the tick, after publishing, moves them into run_stats, a missed
    instant it recorded itself included."""
    await add(pool, "nightly", cron="0 2 * * *", misfire=Misfire.SKIP)
    await pool.execute(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state, started_at, finished_at)"
        " SELECT 'nightly', 'probe', now(), 'manual', 'succeeded', now(), now() FROM generate_series(1, 3)"
    )
    assert await pool.fetchval("SELECT sum(n) FROM run_stats_pending") == 3
    # the 02:00 instant passed two days ago without a tick: recorded missed (misfire skip)
    await pool.execute("UPDATE schedules SET next_fire_at = $1", T0 - timedelta(days=2, hours=10))
    await fire_due(pool, rabbit_publisher, T0)
    assert await pool.fetchval("SELECT count(*) FROM run_stats_pending") == 0
    rolled = await pool.fetch(
        "SELECT succeeded, missed FROM run_stats WHERE schedule_name = 'nightly' AND grain = 'day'"
    )
    assert sum(row["succeeded"] for row in rolled) == 3
    assert sum(row["missed"] for row in rolled) == await pool.fetchval(
        "SELECT count(*) FROM runs WHERE state = 'missed'"
    )
    assert sum(row["missed"] for row in rolled) >= 1

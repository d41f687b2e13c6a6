"""Every schedule option declared in app/schedule.py crosses every boundary, derived from its one declaration:
the CLI flag, the ``schedules`` row (upsert and back), the runs the tick and a finished upstream fire (their
message options), and the JSON output. A new option gets all of it by being declared, once a sample of it is
added to :data:`SAMPLES` (the first test says so).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import asyncpg
import pytest

from app.cli.main import main
from app.cli.output import schedule_json
from app.clock import fire_due
from app.db.queries import sql
from app.dependencies import fire_dependents
from app.misfire import Misfire
from app.publisher import Publisher
from app.schedule import OPTIONS, Schedule
from app.schedule_store import get_schedule, save_schedule
from tests import services
from tests.wiring import fresh_app_actors

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)

# Per option: a value other than its default, the CLI flags that give it, and how the JSON output shows it (under
# the key its kind names: a duration's is ``<name>_seconds``).
SAMPLES: dict[str, tuple[Any, list[str], Any]] = {
    "timezone": ("Asia/Shanghai", ["--tz", "Asia/Shanghai"], "Asia/Shanghai"),
    "misfire": (Misfire.ALL, ["--misfire", "all"], "all"),
    "catchup_window": (timedelta(minutes=90), ["--catchup-window", "1h30m"], 5400),
    "overlap": ("queue", ["--overlap", "queue"], "queue"),
    "lock_key": ("kb:{output}", ["--lock-key", "kb:{output}"], "kb:{output}"),
    "max_retries": (5, ["--max-retries", "5"], 5),
    "min_backoff": (timedelta(seconds=2), ["--min-backoff", "2s"], 2),
    "max_backoff": (timedelta(minutes=2), ["--max-backoff", "2m"], 120),
    "timeout": (timedelta(minutes=10), ["--timeout", "10m"], 600),
    "jitter": (timedelta(seconds=1, milliseconds=500), ["--jitter", "1s500ms"], 1.5),
    "notify": (("mailto:ops@example.com",), ["--notify", "mailto:ops@example.com"], ["mailto:ops@example.com"]),
    "after": (("up",), ["--after", "up"], ["up"]),
    "description": ("every option", ["--description", "every option"], "every option"),
    "retry_timeouts": (True, ["--retry-timeouts"], True),
    "notify_on_recovery": (True, ["--notify-on-recovery"], True),
}
JSON_KEYS = {spec.name: spec.kind.json_key(spec.name) for spec in OPTIONS}
# What a run is published with, for each option that is a message option (Dramatiq's in milliseconds).
MESSAGE = {
    "max_retries": 5,
    "min_backoff": 2_000,
    "max_backoff": 120_000,
    "time_limit": 600_000,
    "overlap": "queue",
    "lock_key": "kb:{output}",
    "retry_timeouts": True,
}
ARGS = {"output": "docs"}
UPSTREAM = Schedule("up", "probe", "0 0 1 1 *")


@pytest.fixture(scope="module")
def wiring() -> Iterator[ModuleType]:
    """The CLI's ``app.actors``, with no code schedules and the tests' RabbitMQ (see tests/wiring.py)."""
    env = {"PUNCHCLOCK_SCHEDULES_MODULE": "", "PUNCHCLOCK_BROKER_URL": services.RABBITMQ_URL}
    with fresh_app_actors(env) as module:
        yield module


def every_option(name: str = "full", **changes: Any) -> Schedule:
    values = {option: sample for option, (sample, _, _) in SAMPLES.items()}
    return replace(Schedule(name, "probe", "* * * * *", args=ARGS, **values), **changes).validated({"probe"})


def test_every_declared_option_has_a_sample_other_than_its_default() -> None:
    declared = {spec.name: spec.default for spec in OPTIONS}
    assert set(SAMPLES) == set(declared), "add a sample of each new option to SAMPLES"
    assert [name for name, (sample, _, _) in SAMPLES.items() if sample == declared[name]] == []
    assert {spec.message for spec in OPTIONS if spec.message is not None} == set(MESSAGE)


async def test_every_option_round_trips_through_the_database_and_the_json(pool: asyncpg.Pool[Any]) -> None:
    schedule = every_option()
    async with pool.acquire() as conn:
        await save_schedule(conn, schedule, source="code", now=NOW)
        stored = await get_schedule(conn, "full")
        assert stored.schedule == schedule
        # an update changes every option back, keeping nothing of the first version
        plain = Schedule("full", "probe", "* * * * *", args=ARGS).validated({"probe"})
        await save_schedule(conn, plain, source="code", now=NOW)
        assert (await get_schedule(conn, "full")).schedule == plain
    shown = schedule_json(stored)
    assert {name: shown[JSON_KEYS[name]] for name in SAMPLES} == {name: out for name, (_, _, out) in SAMPLES.items()}


async def test_every_message_option_reaches_the_runs_the_tick_fires(
    pool: asyncpg.Pool[Any], rabbit_publisher: Publisher
) -> None:
    # without after: the tick would wait for an upstream run
    schedule = every_option(after=())
    async with pool.acquire() as conn:
        stored = await save_schedule(conn, schedule, source="cli", now=NOW - timedelta(hours=1))
    assert stored.next_fire_at is not None
    await fire_due(pool, rabbit_publisher, stored.next_fire_at + timedelta(seconds=1))
    options = await pool.fetchval("SELECT options FROM runs WHERE schedule_name = 'full'")
    assert options is not None
    assert {key: options[key] for key in MESSAGE} == MESSAGE
    assert options["schedule_id"] == stored.id
    assert schedule.message_options(stored.id) == {**MESSAGE, "schedule_id": stored.id}


async def test_every_message_option_reaches_the_run_a_finished_upstream_fires(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        upstream = await save_schedule(conn, UPSTREAM.validated({"probe"}), source="cli", now=NOW)
        dependent = await save_schedule(conn, every_option("dep", cron=None), source="cli", now=NOW)
        run_id = await conn.fetchval(
            "INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, finished_at)"
            " VALUES ($1, 'up', 'probe', $2, 'cron', 'succeeded', now()) RETURNING id",
            upstream.id,
            NOW,
        )
        assert [row["id"] for row in await conn.fetch(sql("ready_dependents"), run_id)] == [dependent.id]
        (fired,) = await fire_dependents(conn, run_id)
    options = await pool.fetchval("SELECT options FROM runs WHERE id = $1", fired)
    assert {key: options[key] for key in MESSAGE} == MESSAGE
    assert options["schedule_id"] == dependent.id


async def test_every_option_is_a_flag_of_schedules_add(
    wiring: ModuleType, punchclock_env: dict[str, str], pool: asyncpg.Pool[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [flag for _, given, _ in SAMPLES.values() for flag in given]
    assert await asyncio.to_thread(main, ["schedules", "add", "up", "--actor", "probe", "--cron", "0 0 1 1 *"]) == 0
    argv = ["schedules", "add", "full", "--actor", "probe", "--cron", "* * * * *", "--args", json.dumps(ARGS)]
    assert await asyncio.to_thread(main, [*argv, *flags]) == 0
    async with pool.acquire() as conn:
        assert (await get_schedule(conn, "full")).schedule == every_option()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["schedules", "show", "full", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {name: shown[JSON_KEYS[name]] for name in SAMPLES} == {name: out for name, (_, _, out) in SAMPLES.items()}

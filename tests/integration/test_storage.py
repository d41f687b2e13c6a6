"""Migrations and the schedules store on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.db.migrate import available_migrations, migrate
from app.db.pool import connect
from app.errors import InvalidInput
from app.schedule import Schedule
from app.schedule_store import (
    add_schedule,
    delete_schedule,
    get_schedule,
    save_schedule,
    set_paused,
    sync_code_schedules,
)
from tests import services

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
ACTORS = {"probe"}


async def test_migrations_apply_once_when_several_workers_boot_together(pg_admin_url: str) -> None:
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute("DROP DATABASE IF EXISTS punchclock_migrate_race WITH (FORCE)")
    await admin.execute("CREATE DATABASE punchclock_migrate_race")
    url = services.with_database(pg_admin_url, "punchclock_migrate_race")
    try:
        conns = [await connect(url) for _ in range(4)]
        applied = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(a) for a in applied) == [0, 0, 0, len(available_migrations())]
        assert await migrate(conns[0]) == []
        assert await conns[0].fetchval("SELECT count(*) FROM punchclock_migrations") == len(available_migrations())
        for c in conns:
            await c.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS punchclock_migrate_race WITH (FORCE)")
        await admin.close()


def code(name: str, **fields: Any) -> Schedule:
    return Schedule(name=name, actor="probe", cron=fields.pop("cron", "*/5 * * * *"), **fields)


async def test_sync_creates_updates_and_orphans_code_schedules(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await sync_code_schedules(conn, [code("a"), code("b")], ACTORS, now=NOW)
        a = await get_schedule(conn, "a")
        assert (a.source, a.next_fire_at) == ("code", datetime(2026, 11, 25, 12, 5, tzinfo=UTC))

        # Next boot: "a" changed its args only (its pending instant is kept), "b" was removed from code.
        synced, orphaned = await sync_code_schedules(
            conn, [code("a", args={"seconds": 1})], ACTORS, now=NOW + timedelta(minutes=7)
        )
        assert (synced, orphaned) == (["a"], ["b"])
        a = await get_schedule(conn, "a")
        assert a.schedule.args == {"seconds": 1}
        assert a.next_fire_at == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)
        b = await get_schedule(conn, "b")
        assert (b.orphaned, b.schedule.paused) == (True, True)
        assert await conn.fetchval("SELECT count(*) FROM schedules") == 2  # kept for its history

        # "b" comes back: adopted again and running; a changed cron restarts the clock from now.
        await sync_code_schedules(conn, [code("a", cron="0 * * * *"), code("b")], ACTORS, now=NOW)
        b = await get_schedule(conn, "b")
        assert (b.orphaned, b.schedule.paused) == (False, False)
        assert (await get_schedule(conn, "a")).next_fire_at == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


async def test_sync_keeps_an_operators_pause(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await sync_code_schedules(conn, [code("a")], ACTORS, now=NOW)
        await set_paused(conn, "a", True, now=NOW)
        await sync_code_schedules(conn, [code("a")], ACTORS, now=NOW)
        assert (await get_schedule(conn, "a")).schedule.paused


async def test_invalid_code_schedules_write_nothing(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(InvalidInput, match='unknown actor "nope"'):
            await sync_code_schedules(conn, [code("a"), Schedule("b", "nope", "* * * * *")], ACTORS, now=NOW)
        with pytest.raises(InvalidInput, match="declares a more than once"):
            await sync_code_schedules(conn, [code("a"), code("a")], ACTORS, now=NOW)
        assert await conn.fetchval("SELECT count(*) FROM schedules") == 0


async def test_resume_restarts_the_clock_from_now(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await add_schedule(conn, code("a").validated(ACTORS), now=NOW)
        await set_paused(conn, "a", True, now=NOW)
        resumed = await set_paused(conn, "a", False, now=NOW + timedelta(hours=2))
        assert resumed.next_fire_at == datetime(2026, 11, 25, 14, 5, tzinfo=UTC)  # no misfire for paused time
        with pytest.raises(InvalidInput, match='schedule "a" already exists'):
            await add_schedule(conn, code("a").validated(ACTORS), now=NOW)


async def test_schedules_round_trip_every_field(pool: asyncpg.Pool[Any]) -> None:
    original = Schedule(
        name="full",
        actor="probe",
        cron="30 2 * * 1-5",
        args={"k": [1, "two"], "kb": "docs"},
        timezone="Asia/Shanghai",
        misfire="all",
        catchup_window=timedelta(minutes=90),
        overlap="queue",
        lock_key="kb:{kb}",
        max_retries=5,
        min_backoff=timedelta(seconds=2),
        max_backoff=timedelta(minutes=2),
        timeout=timedelta(minutes=10),
        jitter=timedelta(seconds=30),
        notify=("webhook:http://x",),
        description="all fields",
    ).validated(ACTORS)
    async with pool.acquire() as conn:
        await save_schedule(conn, original, source="cli", now=NOW)
        assert (await get_schedule(conn, "full")).schedule == original


async def test_a_dependency_cycle_is_refused_with_its_path(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await sync_code_schedules(conn, [code("a"), Schedule("b", "probe", None, after=("a",))], ACTORS, now=NOW)
        cyclic = [
            code("a", after=("c",)),
            Schedule("b", "probe", None, after=("a",)),
            Schedule("c", "probe", None, after=("b",)),
        ]
        with pytest.raises(InvalidInput, match="dependency cycle: a → c → b → a"):
            await sync_code_schedules(conn, cyclic, ACTORS, now=NOW)
        with pytest.raises(InvalidInput, match='runs after unknown schedule "ghost"'):
            await add_schedule(conn, Schedule("d", "probe", None, after=("ghost",)).validated(ACTORS), now=NOW)
        assert sorted(r["name"] for r in await conn.fetch("SELECT name FROM schedules")) == ["a", "b"]
        with pytest.raises(
            InvalidInput,
            match='schedule "a" cannot be deleted: schedule "b" runs after it; change or delete them first',
        ):
            await delete_schedule(conn, "a")

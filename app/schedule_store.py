"""Schedules in PostgreSQL: create, update, pause, delete, and the sync of ``schedules.py`` at boot.

Every write takes ``now`` (the database's clock, read by the caller) to compute the next fire instant, so the
stored ``next_fire_at`` is always a real cron instant in the future of the write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import asyncpg

from app.actor_args import KnownActors
from app.cron import next_fires
from app.db.queries import sql
from app.dependencies import check_dependencies
from app.errors import InvalidInput, NotFound
from app.schedule import OPTIONS, Schedule
from app.schedule_options import from_row, to_db

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from app.db.pool import Connection


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule as the database holds it: the definition plus the clock's state."""

    id: int
    schedule: Schedule
    source: str
    orphaned: bool
    next_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_state: str | None = None


def stored_schedule(row: asyncpg.Record) -> StoredSchedule:
    schedule = Schedule(
        name=row["name"],
        actor=row["actor"],
        cron=row["cron"],
        args=row["args"],
        paused=row["paused"],
        **from_row(OPTIONS, row),
    )
    return StoredSchedule(
        id=row["id"],
        schedule=schedule,
        source=row["source"],
        orphaned=row["orphaned"],
        next_fire_at=row["next_fire_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_state=row.get("last_state"),
    )


@cache
def _upsert_sql() -> str:
    """``upsert_schedule.sql`` with its option column lists filled in from the options' declaration."""
    names = [spec.name for spec in OPTIONS]
    return sql("upsert_schedule").format(
        options=", ".join(names),
        d_options=", ".join(f"d.{name}" for name in names),
        excluded_options=", ".join(f"excluded.{name}" for name in names),
    )


def first_fire_after(schedule: Schedule, now: datetime) -> datetime | None:
    if schedule.cron is None:
        return None
    return next_fires(schedule.cron, schedule.timezone, now, 1)[0]


async def save_schedule(conn: Connection, schedule: Schedule, *, source: str, now: datetime) -> StoredSchedule:
    """Create or update by name. ``schedule`` must already be validated."""
    s = schedule
    # One record keyed by column, not a parameter per column: its keys name what they hold.
    definition = {
        "name": s.name,
        "actor": s.actor,
        "args": dict(s.args),
        "cron": s.cron,
        "paused": s.paused,
        **to_db(OPTIONS, s),
    }
    row = await conn.fetchrow(_upsert_sql(), definition, source, first_fire_after(s, now))
    assert row is not None
    return stored_schedule(row)


async def add_schedule(conn: Connection, schedule: Schedule, *, now: datetime) -> StoredSchedule:
    """Create a CLI schedule; refuses a name that exists (code or CLI) rather than overwrite it."""
    async with conn.transaction():
        existing = await conn.fetchrow(sql("get_schedule"), schedule.name)
        if existing is not None:
            raise InvalidInput(
                f'schedule "{schedule.name}" already exists (source: {existing["source"]}):'
                " pick another name, or delete it first"
            )
        await check_dependencies(conn, {schedule.name: schedule.after})
        return await save_schedule(conn, schedule, source="cli", now=now)


async def sync_code_schedules(
    conn: Connection,
    schedules: Iterable[Schedule],
    known_actors: KnownActors,
    *,
    now: datetime,
    allow_link_local: bool = False,
) -> tuple[list[str], list[str]]:
    """Make the database match ``schedules.py``: (names synced, names orphaned). All or nothing."""
    validated = [s.validated(known_actors, allow_link_local=allow_link_local) for s in schedules]
    names = [s.name for s in validated]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"schedules.py declares {', '.join(duplicates)} more than once: names must be unique")
    async with conn.transaction():
        await check_dependencies(conn, {s.name: s.after for s in validated})
        for schedule in validated:
            await save_schedule(conn, schedule, source="code", now=now)
        orphaned = [row["name"] for row in await conn.fetch(sql("orphan_code_schedules"), names)]
    for name in orphaned:
        logger.warning(
            "schedule removed from code: paused and kept", extra={"action": "schedule_orphaned", "schedule": name}
        )
    logger.info("schedules synced", extra={"action": "schedules_synced", "count": len(names)})
    return names, orphaned


async def get_schedule(conn: Connection, name: str) -> StoredSchedule:
    row = await conn.fetchrow(sql("get_schedule"), name)
    if row is None:
        raise NotFound(f'no schedule named "{name}": see punchclock schedules list')
    return stored_schedule(row)


async def list_schedules(conn: Connection) -> list[StoredSchedule]:
    return [stored_schedule(row) for row in await conn.fetch(sql("list_schedules"))]


async def set_paused(conn: Connection, name: str, paused: bool, *, now: datetime) -> StoredSchedule:
    current = await get_schedule(conn, name)
    row = await conn.fetchrow(sql("set_paused"), name, paused, first_fire_after(current.schedule, now))
    if row is None:
        raise NotFound(f'no schedule named "{name}": see punchclock schedules list')
    return stored_schedule(row)


async def delete_schedule(conn: Connection, name: str) -> None:
    dependents = await conn.fetchval(sql("dependents_of"), name)
    if dependents:
        names = ", ".join(f'"{dependent}"' for dependent in dependents)
        who = f"schedule {names} runs after it" if len(dependents) == 1 else f"schedules {names} run after it"
        raise InvalidInput(f'schedule "{name}" cannot be deleted: {who}; change or delete them first')
    if await conn.fetchval(sql("delete_schedule"), name) is None:
        raise NotFound(f'no schedule named "{name}": see punchclock schedules list')


async def insert_backfill_runs(conn: Connection, stored: StoredSchedule, instants: list[datetime]) -> list[int]:
    """Record one ``backfill`` run of ``stored`` per instant, ids ascending in instant order, with the
    schedule's args and options; the ids. They are left ``scheduled``, for the outbox to publish."""
    s = stored.schedule
    ids = await conn.fetch(
        sql("cli_insert_backfill_runs"),
        stored.id,
        s.name,
        s.actor,
        dict(s.args),
        s.message_options(stored.id),
        sorted(instants),
    )
    return [row["id"] for row in ids]

"""The asyncpg pool: JSON codecs set once per connection, the URL resolved from settings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from app.db.embedded import embedded_database_url
from app.settings import Settings

if TYPE_CHECKING:
    # asyncpg's classes are generic only in its stubs, so these aliases exist for the type checker alone.
    Pool: TypeAlias = asyncpg.Pool[Any]
    Connection: TypeAlias = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]
    # what a single statement can run on: a connection, or the pool (which lends one for the statement)
    Executor: TypeAlias = Connection | Pool


def database_url(settings: Settings, *, create: bool = True) -> str:
    """The configured URL, or the embedded server's (started on first use; initialised only with ``create``)."""
    return settings.database_url or embedded_database_url(settings.pgdata, create=create)


async def _init_connection(conn: Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Replaces asyncpg's reset of a connection returned to the pool (``RESET ALL``, ``UNLISTEN *``, …), a round
    trip per statement: punchclock keeps no session state (no LISTEN, SET or session advisory locks; the
    migration lock is transaction-scoped), so there is nothing to reset."""


async def create_pool(url: str, size: int) -> Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=size, init=_init_connection, reset=_keep_session)
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection[Any]:
    """One connection with the same codecs as the pool's (CLI commands, migrations)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn

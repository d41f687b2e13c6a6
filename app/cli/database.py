"""One database session per CLI command: connect, migrate (idempotent and cheap), do the work, close.

Connection failures become :class:`ConfigurationError` naming ``PUNCHCLOCK_DATABASE_URL`` (exit code 1), the URL
shown through :func:`app.redaction.redact_url` (no password).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from app.console import say
from app.db.migrate import migrate
from app.db.pool import connect, database_url
from app.db.queries import sql
from app.errors import ConfigurationError, PunchclockError
from app.redaction import redact_url
from app.settings import Settings

T = TypeVar("T")

# What asyncpg raises when the server is down, refuses us, or drops the connection.
DATABASE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class Database:
    """An open connection, the URL it came from (to open a pool on), and the migrations just applied."""

    conn: asyncpg.Connection[Any]
    url: str
    migrated: list[str]

    async def now(self) -> datetime:
        """The database's clock: the one the tick fires by, so the CLI agrees with it."""
        now: datetime = await self.conn.fetchval(sql("db_now"))
        return now


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]], *, create: bool = False) -> T:
    """Run ``work`` on a fresh, migrated connection in its own event loop. The embedded database is created only
    with ``create`` (``punchclock migrate``): any other command run where none exists says how to create one."""
    if not settings.database_url:
        # Which of possibly several embedded databases this is; on stderr, so `--json` output stays clean.
        say(f"punchclock: embedded PostgreSQL in {settings.pgdata}", err=True)
    return asyncio.run(_session(settings, work, create))


async def _session(settings: Settings, work: Callable[[Database], Awaitable[T]], create: bool) -> T:
    url = database_url(settings, create=create)
    shown = redact_url(url)
    try:
        conn = await connect(url)
    except DATABASE_ERRORS as exc:
        raise ConfigurationError(f"cannot connect to PostgreSQL at {shown}: {exc}; {_fix(settings)}") from None
    try:
        migrated = await migrate(conn)
        return await work(Database(conn, url, migrated))
    except BrokenPipeError:  # an OSError, but stdout's (`runs prune | head`), not the database connection's
        raise
    except asyncpg.PostgresError as exc:  # the server answered, with an error
        raise PunchclockError(f"PostgreSQL at {shown} refused: {exc}") from None
    except DATABASE_ERRORS as exc:
        raise PunchclockError(f"lost the connection to PostgreSQL at {shown}: {exc}; {_fix(settings)}") from None
    finally:
        await conn.close()


def _fix(settings: Settings) -> str:
    if settings.database_url:
        return "check PUNCHCLOCK_DATABASE_URL and that the server is up"
    return (
        f"the embedded PostgreSQL in {settings.pgdata} did not answer; remove that directory to start afresh,"
        " or set PUNCHCLOCK_DATABASE_URL"
    )

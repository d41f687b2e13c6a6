"""Numbered ``.sql`` migrations, applied in order, once, safely when several workers boot together.

All pending migrations run in one transaction holding a transaction-level advisory lock: a second process
waits for the first, then finds nothing left to apply.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.db.pool import Connection

logger = logging.getLogger(__name__)

# An arbitrary constant shared by every punchclock process: "the migrations lock".
MIGRATION_LOCK_ID = 7_202_611_250
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped, oldest first."""
    folder = resources.files("app.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: Connection) -> list[str]:
    """Apply what is pending; return the names applied (empty when up to date)."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS punchclock_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM punchclock_migrations")}
        for version, name, text in available_migrations():
            if version in done:
                continue
            await conn.execute(text)
            await conn.execute("INSERT INTO punchclock_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(name)
            logger.info("migration applied", extra={"action": "migration_applied", "migration": name})
    return applied_now

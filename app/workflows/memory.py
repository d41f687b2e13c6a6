"""A workflow's memory across runs, in PostgreSQL: small JSON values by key (yesterday's suggestion)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.db.queries import sql

if TYPE_CHECKING:
    from app.db.pool import Executor


class Memory:
    def __init__(self, db: Executor, workflow: str, run_id: int | None) -> None:
        self._db = db
        self._workflow = workflow
        self._run_id = run_id

    async def get(self, key: str, default: Any = None) -> Any:
        row = await self._db.fetchrow(sql("memory_get"), self._workflow, key)
        return default if row is None else row["value"]

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` (anything JSON can hold) under ``key``, replacing what was there."""
        await self._db.execute(sql("memory_set"), self._workflow, key, value, self._run_id)

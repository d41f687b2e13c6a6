"""What ``punchclock dev`` hands over between one run of it and the next, so that no accepted run is lost.

dev's broker is in memory: at Ctrl-C the messages it holds are gone, and after a hard kill so are its running
attempts' workers. Nothing is lost in the database, though, and production already has the rules that move such
runs on (app/recovery.py): an attempt whose lease passed is lost and taken over; a run whose message is overdue is
re-published. dev keeps those rules and only skips their waits, because at its start it knows what production
must wait to find out: no other dev is alive on this data directory, and the broker is empty
(``dev_take_over.sql``). At stop, dev counts what it hands back: every run not finished, which is exactly what the
next start takes over.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.db.pool import connect
from app.db.queries import sql
from app.recovery import Sweep, sweep

if TYPE_CHECKING:
    from app.db.pool import Pool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TakeOver:
    resent: int = 0  # enqueued or retrying runs sent back to the outbox
    recovered: dict[str, int] = field(default_factory=dict)  # lost attempts: the run's new state -> count

    @property
    def total(self) -> int:
        return self.resent + sum(self.recovered.values())

    def text(self) -> str:
        recovered = ", ".join(f"{count} {state}" for state, count in sorted(self.recovered.items()))
        return f"{self.resent} re-published" + (f", attempts lost and resolved: {recovered}" if recovered else "")


async def take_over(pool: Pool, recovery: Sweep, *, batch: int) -> TakeOver:
    """End the leases of the previous dev's attempts and re-publish its messages (``dev_take_over.sql``), then
    run the sweep once, so its lost-attempt rule resolves those attempts now rather than at the next tick."""
    row = await pool.fetchrow(sql("dev_take_over"))
    assert row is not None
    report = await sweep(pool, recovery, batch=batch) if row["expired"] else None
    taken = TakeOver(resent=row["resent"], recovered=report.recovered if report else {})
    if taken.total or row["expired"]:
        logger.warning(
            "runs left by the previous punchclock dev taken over",
            extra={
                "action": "dev_took_over",
                "resent": taken.resent,
                "attempts_expired": row["expired"],
                "recovered": taken.recovered,
            },
        )
    return taken


def unfinished(url: str) -> int | None:
    """How many runs are not finished, on a connection of its own (the worker's pool is closed by now); None when
    the database cannot say."""

    async def count() -> int:
        conn = await connect(url)
        try:
            result: int = await conn.fetchval(sql("dev_unfinished"))
            return result
        finally:
            await conn.close()

    try:
        return asyncio.run(count())
    except Exception as exc:  # the stop goes on; the next start takes over whatever there is all the same
        logger.error("could not count unfinished runs", extra={"action": "dev_unfinished_unknown", "error": str(exc)})
        return None

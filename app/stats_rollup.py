"""The stats rollup's upkeep: the tick moves what workers appended to ``run_stats_pending`` into ``run_stats``.

A worker's finish only appends one row of change (migration 0006), so that keeping stats never makes it wait on
the rollup row of its schedule that every other finish updates too. ``punchclock stats`` reads both tables, so it
is exact whatever this lags; the upkeep only keeps what it has to read small: about a tick of finishes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.db.queries import sql

if TYPE_CHECKING:
    from app.db.pool import Executor

logger = logging.getLogger(__name__)

# Pending rows per statement: a few tens of milliseconds of aggregation, each statement its own transaction.
ROLLUP_BATCH = 50_000
# Statements per tick: 1 M rows, beyond any minute of finishes on one database; a backlog (the clock was down)
# drains over the next ticks, while stats stays exact.
ROLLUP_ROUNDS = 20


async def roll_up(db: Executor, *, batch: int = ROLLUP_BATCH, rounds: int = ROLLUP_ROUNDS) -> int:
    """Move pending stats changes into the rollup until none is left, or ``rounds`` statements; return how many
    pending rows were moved. Another clock rolling up at the same moment makes this one stop at once."""
    moved = 0
    for _ in range(rounds):
        taken: int = await db.fetchval(sql("roll_up_run_stats"), batch)
        if taken < 0:
            break
        moved += taken
        if taken < batch:
            break
    if moved:
        logger.debug("stats changes rolled up", extra={"action": "stats_rolled_up", "changes": moved})
    return moved

"""Retention: final runs that finished longer ago than ``PUNCHCLOCK_RUN_RETENTION`` (default 90 days) are deleted,
with their attempts, steps and notifications.

Deleting goes in bounded batches, each one statement and its own short transaction (``prune_runs.sql``), so it
never holds what the tick or a worker needs for long: a batch locks only the old runs it deletes (its stats
change is appended to ``run_stats_pending``, which the tick rolls up). Two ways in:

- the tick's recovery sweep deletes one batch (``SWEEP_BATCH``) per tick, up to the start of the hour the
  retention reaches back to (whole hours: a few stats changes each; see migration 0006). That keeps up with
  ``SWEEP_BATCH`` runs a minute, 7.2 million a day;
- ``punchclock runs prune`` deletes everything past a cutoff, batch after batch, for a first clean-up or a
  one-off ``--older-than``.

What stays whatever its age (in flight, named in another run's ``blocked_by``, a schedule's latest run that
executed, follow-ups still due) and why pruning cannot make an instant fire twice: ``prune_runs.sql``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from app.db.queries import sql
from app.durations import format_duration, parse_duration
from app.errors import InvalidInput

if TYPE_CHECKING:
    from app.db.pool import Executor

# A finished run's notifications and its dependents can still read it for a while: a schedule running after two
# upstreams reads the first one's run of an instant when the second succeeds, which retries may delay for hours.
MIN_RETENTION = timedelta(days=1)
# Further back than a century, PostgreSQL's now() - retention leaves its timestamp range.
MAX_RETENTION = timedelta(days=36500)
OFF = ("off", "0")

SWEEP_BATCH = 5_000
DEFAULT_BATCH = 5_000
# A batch holds its row locks until it commits; beyond this one batch takes seconds.
MAX_BATCH = 50_000


def parse_retention(text: str) -> timedelta | None:
    """``90d``, ``12h``...: how long runs are kept after they finish; ``off`` or ``0``: forever (None).
    :class:`InvalidInput` for anything else, or a duration outside ``MIN_RETENTION``-``MAX_RETENTION``."""
    if text.strip().lower() in OFF:
        return None
    return check_age(parse_duration(text))


def check_age(age: timedelta) -> timedelta:
    """``age`` when runs that finished that long ago may be pruned, else :class:`InvalidInput` saying why (the
    caller names the value)."""
    if age < MIN_RETENTION:
        raise InvalidInput(
            f"too short: keep runs at least {format_duration(MIN_RETENTION)} after they finish (their notifications"
            " and dependents may still read them)"
        )
    if age > MAX_RETENTION:
        raise InvalidInput(f"too long: at most {format_duration(MAX_RETENTION)}")
    return age


def check_batch(batch: int) -> int:
    if not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(
            f"invalid --batch {batch}: must be 1-{MAX_BATCH} runs per transaction (default {DEFAULT_BATCH})"
        )
    return batch


def sweep_cutoff(now: datetime, retention: timedelta) -> datetime:
    """Where the sweep prunes up to at ``now`` (the database's clock, UTC): the start of the hour ``retention``
    reaches back to, so each batch takes whole hours."""
    return (now - retention).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Batch:
    """What one batch deleted: how many runs, and the latest hour they were created in (None: none)."""

    deleted: int
    last_hour: datetime | None


async def prune_batch(executor: Executor, cutoff: datetime, batch: int, *, from_hour: datetime | None = None) -> Batch:
    """Delete at most ``batch`` final runs that finished before ``cutoff`` (created in the hour ``from_hour`` or
    later, when given), oldest hour first, in a transaction of their own (call it outside one). Their attempts,
    steps and notifications go with them."""
    row = await executor.fetchrow(sql("prune_runs"), cutoff, batch, from_hour)
    assert row is not None
    return Batch(row["runs"], row["last_hour"])


async def count_prunable(executor: Executor, cutoff: datetime) -> int:
    """How many runs :func:`prune_batch` would delete now before ``cutoff``, in all batches (``--dry-run``)."""
    count: int = await executor.fetchval(sql("count_prunable_runs"), cutoff)
    return count


@dataclass(frozen=True)
class Progress:
    """How far a prune got: runs deleted, batches, seconds since it began."""

    deleted: int
    batches: int
    seconds: float

    @property
    def rate(self) -> float:
        """Runs deleted per second (0 before any time has passed)."""
        return self.deleted / self.seconds if self.seconds > 0 else 0.0


async def prune(
    executor: Executor,
    cutoff: datetime,
    *,
    batch: int = DEFAULT_BATCH,
    report: Callable[[Progress], None] | None = None,
    report_every: float = 2.0,
) -> Progress:
    """Delete every run :func:`prune_batch` may delete before ``cutoff``, one batch (and transaction) after the
    other, each from the hour the one before reached, until one finds nothing; then once more from the oldest hour,
    for the runs kept only while a run deleted since named them in blocked_by. ``report`` hears the progress every
    ``report_every`` seconds."""
    started = last_report = time.monotonic()
    deleted = batches = 0
    from_hour: datetime | None = None
    while True:
        done = await prune_batch(executor, cutoff, batch, from_hour=from_hour)
        deleted += done.deleted
        batches += 1
        now = time.monotonic()
        if done.deleted == 0 and from_hour is None:
            return Progress(deleted, batches, now - started)
        from_hour = done.last_hour
        if report is not None and done.deleted and now - last_report >= report_every:
            report(Progress(deleted, batches, now - started))
            last_report = now

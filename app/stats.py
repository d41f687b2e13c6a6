"""Run statistics per schedule: success rate, duration percentiles, and a sparkline of recent durations.

Pure: the database computes the aggregates (``cli_stats_rollup.sql``); this module turns them into the figures
and text that ``punchclock stats`` prints. Durations are in seconds.

Percentiles are exact (PostgreSQL's ``percentile_cont``) for a schedule with at most ``EXACT_UP_TO`` timed runs in
the window. Above that they are estimated from the duration histogram of the stats rollup (migration 0006), which
keeps 8 buckets per doubling: :func:`histogram_percentile` is what ``percentile_cont`` gives when each duration is
replaced by the middle of its bucket, so it is within ``RELATIVE_ERROR`` (4.4 %) of the exact value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.durations import format_duration

BARS = "▁▂▃▄▅▆▇█"
# The finished states a success rate counts: a cancelled, skipped or missed run neither succeeded nor failed.
COUNTED = ("succeeded", "failed", "timed_out")

# Up to this many timed runs (with a start and a finish) of a schedule in the window, its percentiles are computed
# from the runs themselves; one query reads at most this many runs per schedule for them.
EXACT_UP_TO = 100
BUCKETS_PER_DOUBLING = 8
"""The rollup's duration histogram: bucket 0 holds durations under 1 ms, bucket b >= 1 holds [2^((b-1)/8),
2^(b/8)) ms (``punchclock_duration_bucket`` in migration 0006)."""
RELATIVE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
"""How far an estimated percentile can be from the exact one, relatively, for durations of 1 ms or more (under
1 ms: 0.5 ms at most): a bucket's middle is within this of every duration in it."""


@dataclass(frozen=True)
class ScheduleStats:
    """One schedule's runs created in the window. ``recent`` holds the durations of the last (up to ten) runs
    created, oldest first; the percentiles are over every run in the window with both a start and a finish (None
    when there is none), estimated from the histogram when ``approximate``."""

    schedule: str | None
    states: Mapping[str, int]
    p50: float | None
    p95: float | None
    recent: Sequence[float]
    approximate: bool = False

    @property
    def runs(self) -> int:
        return sum(self.states.values())

    @property
    def success_rate(self) -> float | None:
        """Succeeded over succeeded + failed + timed out; None when none of those finished yet."""
        counted = sum(self.states.get(state, 0) for state in COUNTED)
        return None if counted == 0 else self.states.get("succeeded", 0) / counted


def bucket_seconds(bucket: int) -> float:
    """The duration every run in histogram ``bucket`` is taken as: the geometric middle of the bucket (0.5 ms for
    bucket 0, which holds everything under 1 ms)."""
    if bucket <= 0:
        return 0.0005
    return 2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING) / 1000


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """``percentile_cont(fraction)`` of the durations counted in ``histogram`` (bucket -> runs), each taken as
    :func:`bucket_seconds` of its bucket; None when it counts no run. Since every duration is within
    ``RELATIVE_ERROR`` of its stand-in and the stand-ins keep the durations' order, the interpolated percentile is
    within ``RELATIVE_ERROR`` too."""
    buckets = sorted((bucket, count) for bucket, count in histogram.items() if count > 0)
    total = sum(count for _, count in buckets)
    if total == 0:
        return None
    rank = fraction * (total - 1)
    below = math.floor(rank)
    low = _value_at(buckets, below)
    if rank == below:
        return low
    return low + (rank - below) * (_value_at(buckets, below + 1) - low)


def _value_at(buckets: Sequence[tuple[int, int]], index: int) -> float:
    """The stand-in duration of the ``index``-th smallest run (from 0) of ``buckets``, ascending."""
    seen = 0
    for bucket, count in buckets:
        seen += count
        if index < seen:
            return bucket_seconds(bucket)
    return bucket_seconds(buckets[-1][0])


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled from the lowest (▁) to the highest (█); equal values all get the middle bar."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[len(BARS) // 2 - 1] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[int((value - low) / (high - low) * top + 0.5)] for value in values)


def seconds_text(seconds: float | None, *, approximate: bool = False) -> str:
    """The compact duration form (``1s500ms``, ``2m5s``), to a tenth of a second under a minute and to the second
    from there on; ``-`` for None. An ``approximate`` value is marked ``~`` (``~1s500ms``)."""
    if seconds is None:
        return "-"
    mark = "~" if approximate else ""
    precision = timedelta(milliseconds=100) if seconds < 59.95 else timedelta(seconds=1)
    return mark + format_duration(timedelta(seconds=seconds), precision=precision)


def percent_text(rate: float | None) -> str:
    """``80%``, ``66.7%``; ``-`` for None."""
    if rate is None:
        return "-"
    return f"{rate * 100:.1f}".removesuffix(".0") + "%"


def stats_json(stats: ScheduleStats) -> dict[str, Any]:
    """The ``--json`` form; ``approximate_percentiles: true`` only when the percentiles are estimates."""
    shown: dict[str, Any] = {
        "schedule": stats.schedule,
        "runs": stats.runs,
        "states": dict(stats.states),
        "success_rate": stats.success_rate,
        "p50_seconds": stats.p50,
        "p95_seconds": stats.p95,
        "recent_seconds": list(stats.recent),
        "sparkline": sparkline(stats.recent),
    }
    if stats.approximate:
        shown["approximate_percentiles"] = True
    return shown

"""Run statistics per schedule: success rate, duration percentiles, and a sparkline of recent durations.

Pure: the database computes the aggregates (``cli_stats.sql``); this module turns them into the figures and
text that ``punchclock stats`` prints. Durations are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.durations import format_duration

BARS = "▁▂▃▄▅▆▇█"
# The finished states a success rate counts: a cancelled, skipped or missed run neither succeeded nor failed.
COUNTED = ("succeeded", "failed", "timed_out")


@dataclass(frozen=True)
class ScheduleStats:
    """One schedule's runs created in the window. ``recent`` holds the last (up to ten) durations, oldest first;
    the percentiles are over every run in the window with both a start and a finish (None when there is none)."""

    schedule: str | None
    states: Mapping[str, int]
    p50: float | None
    p95: float | None
    recent: Sequence[float]

    @property
    def runs(self) -> int:
        return sum(self.states.values())

    @property
    def success_rate(self) -> float | None:
        """Succeeded over succeeded + failed + timed out; None when none of those finished yet."""
        counted = sum(self.states.get(state, 0) for state in COUNTED)
        return None if counted == 0 else self.states.get("succeeded", 0) / counted


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled from the lowest (▁) to the highest (█); equal values all get the middle bar."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[len(BARS) // 2 - 1] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[int((value - low) / (high - low) * top + 0.5)] for value in values)


def seconds_text(seconds: float | None) -> str:
    """``1.5s`` under a minute (to a tenth), the compact duration form from there on (``2m5s``); ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 59.95:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    return format_duration(timedelta(seconds=round(seconds)))


def percent_text(rate: float | None) -> str:
    """``80%``, ``66.7%``; ``-`` for None."""
    if rate is None:
        return "-"
    return f"{rate * 100:.1f}".removesuffix(".0") + "%"


def stats_json(stats: ScheduleStats) -> dict[str, Any]:
    return {
        "schedule": stats.schedule,
        "runs": stats.runs,
        "states": dict(stats.states),
        "success_rate": stats.success_rate,
        "p50_seconds": stats.p50,
        "p95_seconds": stats.p95,
        "recent_seconds": list(stats.recent),
        "sparkline": sparkline(stats.recent),
    }

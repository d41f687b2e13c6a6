"""The pure half of ``punchclock stats``: sparklines, success rates and the text of durations and rates."""

from __future__ import annotations

import pytest

from app.stats import ScheduleStats, percent_text, seconds_text, sparkline, stats_json


def test_sparkline_scales_from_lowest_to_highest() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([8, 1]) == "█▁"
    assert sparkline([0, 10, 5]) == "▁█▅"  # 5 is 3.5 bars up: rounded half up


def test_sparkline_of_equal_values_is_flat() -> None:
    assert sparkline([3.0, 3.0, 3.0]) == "▄▄▄"
    assert sparkline([0, 0]) == "▄▄"


def test_sparkline_of_one_value_and_of_none() -> None:
    assert sparkline([42.5]) == "▄"
    assert sparkline([]) == ""


def test_success_rate_counts_only_succeeded_failed_and_timed_out() -> None:
    stats = ScheduleStats(
        "nightly",
        {"succeeded": 3, "failed": 1, "timed_out": 1, "cancelled": 4, "skipped": 2, "running": 1},
        p50=None,
        p95=None,
        recent=[],
    )
    assert stats.runs == 12
    assert stats.success_rate == 3 / 5


@pytest.mark.parametrize("states", [{}, {"cancelled": 2, "running": 1}])
def test_success_rate_is_none_without_a_counted_run(states: dict[str, int]) -> None:
    assert ScheduleStats("s", states, None, None, []).success_rate is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (1.5, "1s500ms"),
        (2.0, "2s"),
        (59.94, "59s900ms"),
        (59.96, "1m"),
        (125.4, "2m5s"),
        (3600, "1h"),
    ],
)
def test_seconds_text(seconds: float | None, text: str) -> None:
    assert seconds_text(seconds) == text


@pytest.mark.parametrize(("rate", "text"), [(None, "-"), (1.0, "100%"), (0.8, "80%"), (2 / 3, "66.7%"), (0, "0%")])
def test_percent_text(rate: float | None, text: str) -> None:
    assert percent_text(rate) == text


def test_stats_json() -> None:
    stats = ScheduleStats("nightly", {"succeeded": 1, "failed": 1}, p50=1.5, p95=1.95, recent=[1.0, 2.0])
    assert stats_json(stats) == {
        "schedule": "nightly",
        "runs": 2,
        "states": {"succeeded": 1, "failed": 1},
        "success_rate": 0.5,
        "p50_seconds": 1.5,
        "p95_seconds": 1.95,
        "recent_seconds": [1.0, 2.0],
        "sparkline": "▁█",
    }

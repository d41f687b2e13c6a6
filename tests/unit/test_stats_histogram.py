"""Percentiles estimated from the stats rollup's duration histogram (app/stats.py): what percentile_cont gives for
the buckets' middles, and within RELATIVE_ERROR of the exact percentile."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from app.stats import (
    BUCKETS_PER_DOUBLING,
    RELATIVE_ERROR,
    ScheduleStats,
    bucket_seconds,
    histogram_percentile,
    seconds_text,
    stats_json,
)


def bucket_of(seconds: float) -> int:
    """migration 0006's punchclock_duration_bucket, in Python."""
    if seconds < 0.001:
        return 0
    return min(400, 1 + math.floor(BUCKETS_PER_DOUBLING * math.log2(seconds * 1000)))


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    below = math.floor(rank)
    if below == rank:
        return ordered[below]
    return ordered[below] + (rank - below) * (ordered[below + 1] - ordered[below])


def test_the_relative_error_is_half_a_bucket() -> None:
    assert abs(RELATIVE_ERROR - 0.0443) < 1e-4
    for bucket in (1, 8, 80, 200):
        low, high = 2 ** ((bucket - 1) / 8) / 1000, 2 ** (bucket / 8) / 1000
        middle = bucket_seconds(bucket)
        assert low < middle < high
        assert middle / low - 1 == pytest.approx(RELATIVE_ERROR)
        assert 1 - middle / high < RELATIVE_ERROR
    assert bucket_seconds(0) == 0.0005


def test_an_estimate_is_percentile_cont_of_the_bucket_middles() -> None:
    histogram = {10: 3, 80: 1, 5: 2}  # unsorted, as the database returns them
    middles = sorted([bucket_seconds(5)] * 2 + [bucket_seconds(10)] * 3 + [bucket_seconds(80)])
    for fraction in (0, 0.1, 0.5, 0.95, 1):
        assert histogram_percentile(histogram, fraction) == pytest.approx(percentile_cont(middles, fraction))


def test_no_run_no_percentile() -> None:
    assert histogram_percentile({}, 0.5) is None
    assert histogram_percentile({12: 0}, 0.95) is None
    assert histogram_percentile({12: 1}, 0.95) == bucket_seconds(12)


@pytest.mark.parametrize("seed", range(20))
def test_an_estimate_is_within_the_relative_error(seed: int) -> None:
    draw = random.Random(seed)
    median = math.exp(draw.uniform(math.log(0.01), math.log(600)))
    spread = draw.uniform(0.05, 2.0)
    values = [median * math.exp(draw.gauss(0, spread)) for _ in range(draw.randint(1, 3000))]
    values = [max(value, 0.001) for value in values]
    histogram = Counter(bucket_of(value) for value in values)
    for fraction in (0.5, 0.9, 0.95, 0.99):
        exact = percentile_cont(values, fraction)
        estimate = histogram_percentile(histogram, fraction)
        assert estimate is not None
        assert abs(estimate / exact - 1) <= RELATIVE_ERROR + 1e-12, (fraction, exact, estimate)


def test_estimated_percentiles_are_marked() -> None:
    assert seconds_text(65.2, approximate=True) == "~1m5s"
    assert seconds_text(1.24, approximate=True) == "~1s200ms"
    assert seconds_text(None, approximate=True) == "-"
    stats = ScheduleStats("busy", {"succeeded": 500}, 1.5, 3.0, [1.0], approximate=True)
    assert stats_json(stats)["approximate_percentiles"] is True
    assert "approximate_percentiles" not in stats_json(ScheduleStats("quiet", {"succeeded": 1}, 1.0, 1.0, [1.0]))

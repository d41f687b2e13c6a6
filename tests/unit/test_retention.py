"""Retention's settings and inputs (app/retention.py): durations, off, bounds, the sweep's whole-hour cutoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.errors import ConfigurationError, InvalidInput
from app.retention import MAX_BATCH, check_age, check_batch, parse_retention, sweep_cutoff
from app.settings import Settings


@pytest.mark.parametrize(
    ("text", "kept"),
    [("90d", timedelta(days=90)), ("1d", timedelta(days=1)), ("36h", timedelta(hours=36)), ("off", None),
     ("OFF", None), ("0", None), (" off ", None)],
)  # fmt: skip
def test_parse_retention(text: str, kept: timedelta | None) -> None:
    assert parse_retention(text) == kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12h", "too short: keep runs at least 1d after they finish"),
        ("36501d", "too long: at most 36500d"),
        ("forever", 'invalid duration "forever"'),
        ("-1d", "must not be negative"),
    ],
)
def test_parse_retention_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_retention(text)


def test_the_setting() -> None:
    assert Settings().retention == timedelta(days=90)
    assert Settings.from_env({"PUNCHCLOCK_RUN_RETENTION": "30d"}).retention == timedelta(days=30)
    assert Settings.from_env({"PUNCHCLOCK_RUN_RETENTION": "off"}).retention is None
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"PUNCHCLOCK_RUN_RETENTION": "12h"})
    assert str(caught.value) == (
        'PUNCHCLOCK_RUN_RETENTION="12h": too short: keep runs at least 1d after they finish (their notifications'
        " and dependents may still read them) (default 90d; off keeps runs forever)"
    )


def test_bounds() -> None:
    assert check_age(timedelta(days=1)) == timedelta(days=1)
    assert check_batch(1) == 1 and check_batch(MAX_BATCH) == MAX_BATCH
    for batch in (0, -5, MAX_BATCH + 1):
        with pytest.raises(InvalidInput, match=f"invalid --batch {batch}: must be 1-50000"):
            check_batch(batch)


def test_the_sweep_prunes_up_to_the_start_of_an_hour() -> None:
    now = datetime(2026, 3, 8, 14, 37, 12, 5000, tzinfo=UTC)
    assert sweep_cutoff(now, timedelta(days=90)) == datetime(2025, 12, 8, 14, 0, tzinfo=UTC)
    assert sweep_cutoff(now.replace(minute=0, second=0, microsecond=0), timedelta(days=1)) == datetime(
        2026, 3, 7, 14, 0, tzinfo=UTC
    )

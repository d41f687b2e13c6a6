from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from app.consumer_timeout import CONSUMER_TIMEOUT, MAX_DELAY
from app.errors import ConfigurationError, InvalidCron, InvalidInput
from app.misfire import Misfire
from app.schedule import MAX_CATCHUP_WINDOW, MAX_RETRIES, Schedule
from app.settings import DEFAULT_BROKER_URL, Settings
from app.transient import MAX_RETRY_DELAY_MS


def test_settings_defaults_and_overrides() -> None:
    from_env = Settings.from_env({})
    # the data directory is resolved (app/data_dir.py, tests/unit/test_data_dir.py), never left relative
    assert from_env.data_dir.is_absolute()
    assert dataclasses.replace(from_env, data_dir=Settings().data_dir) == Settings()
    assert Settings().broker_url == DEFAULT_BROKER_URL
    s = Settings.from_env(
        {"PUNCHCLOCK_TICK_BATCH": "50", "PUNCHCLOCK_CONFIRM_DELIVERY": "no", "PUNCHCLOCK_DATA_DIR": "/tmp/x"}
    )
    assert (s.tick_batch, s.confirm_delivery, s.pgdata) == (50, False, Path("/tmp/x/pgdata"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUNCHCLOCK_TICK_BATCH": "many"}, 'PUNCHCLOCK_TICK_BATCH="many": must be a whole number'),
        ({"PUNCHCLOCK_TICK_BATCH": "0"}, "PUNCHCLOCK_TICK_BATCH=0: must be 1 or more"),
        ({"PUNCHCLOCK_CONFIRM_DELIVERY": "maybe"}, 'PUNCHCLOCK_CONFIRM_DELIVERY="maybe": use true or false'),
        ({"PUNCHCLOCK_DATABASE_URL": "mysql://x"}, "PUNCHCLOCK_DATABASE_URL must start with postgresql://"),
        ({"PUNCHCLOCK_LOG_FORMAT": "xml"}, 'PUNCHCLOCK_LOG_FORMAT="xml": use text or json'),
        (
            {"PUNCHCLOCK_LOG_LEVEL": "LOUD"},
            'PUNCHCLOCK_LOG_LEVEL="LOUD": use one of DEBUG, INFO, WARNING, ERROR (default INFO)',
        ),
        ({"PUNCHCLOCK_LOG_LEVEL": "CRITICAL"}, 'PUNCHCLOCK_LOG_LEVEL="CRITICAL": use one of DEBUG, INFO'),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Settings.from_env(env)


@pytest.mark.parametrize("level", ["DEBUG", "info", "Warning", "ERROR"])
def test_each_log_level_is_read_in_any_case(level: str) -> None:
    assert Settings.from_env({"PUNCHCLOCK_LOG_LEVEL": level}).log_level == level


def test_a_valid_schedule_is_normalised() -> None:
    s = Schedule("daily", "probe", "@daily", misfire="all").validated({"probe"})  # type: ignore[arg-type]
    assert (s.cron, s.misfire) == ("0 0 * * *", Misfire.ALL)
    assert s.message_options(7) == {
        "max_retries": 3,
        "min_backoff": 10_000,
        "max_backoff": 300_000,
        "time_limit": 1_500_000,
        "schedule_id": 7,
        "overlap": "skip",
        "lock_key": None,
        "retry_timeouts": False,
    }


@pytest.mark.parametrize(
    ("schedule", "error", "message"),
    [
        (Schedule("bad name!", "probe", "* * * * *"), InvalidInput, 'invalid schedule name "bad name!"'),
        (Schedule("a", "nope", "* * * * *"), InvalidInput, 'unknown actor "nope" for schedule "a": known actors'),
        (Schedule("a", "probe", "61 * * * *"), InvalidCron, 'invalid cron "61 * * * *": minute must be 0-59'),
        (Schedule("a", "probe", "* * * * *", timezone="Mars/Base"), InvalidInput, 'unknown time zone "Mars/Base"'),
        (Schedule("a", "probe", "* * * * *", misfire="sometimes"), InvalidInput, "sometimes"),  # type: ignore[arg-type]
        (Schedule("a", "probe", "* * * * *", args={"x": object()}), InvalidInput, "are not JSON"),
        (Schedule("a", "probe", "* * * * *", timeout=timedelta(hours=2)), InvalidInput, "at most 30m"),
        (Schedule("a", "probe", None), InvalidInput, "needs a cron expression"),
        (
            Schedule("a", "probe", "* * * * *", jitter=timedelta(days=10)),
            InvalidInput,
            'invalid jitter 10d for schedule "a": must be at most 25m: a run waits out its jitter as a message held'
            " unacknowledged, which RabbitMQ redelivers once held past its consumer_timeout (30m by default, less a"
            " margin); to go higher, raise consumer_timeout on the broker first (see docs/operations.md)",
        ),
        (Schedule("a", "probe", "* * * * *", jitter=timedelta(minutes=25, milliseconds=1)), InvalidInput, "25m1ms"),
        (
            Schedule("a", "probe", "* * * * *", max_retries=100_000_000_000),
            InvalidInput,
            'invalid max_retries 100000000000 for schedule "a": must be at most 100;',
        ),
        (
            Schedule("a", "probe", "* * * * *", catchup_window=timedelta(days=999_999_999)),
            InvalidInput,
            'invalid catchup_window 999999999d for schedule "a": must be at most 3650d; fire older instants with'
            " punchclock schedules backfill",
        ),
        (
            Schedule("a", "probe", "* * * * *", args={"seconds": float("nan")}),
            InvalidInput,
            'args of schedule "a" cannot be stored: NaN at args.seconds: PostgreSQL\'s jsonb has no NaN or Infinity;'
            " use a number or null",
        ),
        (
            Schedule("a", "probe", "* * * * *", args={"x": {"y": [1, float("-inf")]}}),
            InvalidInput,
            "-Infinity at args.x.y[1]",
        ),
        (
            Schedule("a", "probe", "* * * * *", args={"name": "a\x00b"}),
            InvalidInput,
            'args of schedule "a" cannot be stored: a NUL character (\\u0000) in the string at args.name:'
            " PostgreSQL's jsonb cannot store it; remove it",
        ),
        (
            Schedule("a", "probe", "* * * * *", args={"name": "\ud800"}),
            InvalidInput,
            "a lone UTF-16 surrogate (\\ud800) in the string at args.name",
        ),
    ],
)
def test_invalid_schedules_are_refused_with_the_value_named(
    schedule: Schedule, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        schedule.validated({"probe"})
    assert message in str(caught.value)


def test_the_largest_values_are_accepted() -> None:
    s = Schedule(
        "a",
        "probe",
        "* * * * *",
        jitter=MAX_DELAY,
        max_retries=MAX_RETRIES,
        catchup_window=MAX_CATCHUP_WINDOW,
        args={"big": 10**4000, "tiny": 1e-300, "text": "emoji \U0001f600"},
    ).validated({"probe"})
    assert (s.jitter, s.max_retries) == (timedelta(minutes=25), 100)


def test_jitter_and_retries_share_one_bound_under_the_consumer_timeout() -> None:
    """A run's jitter and a retry's backoff are both delayed messages, held unacknowledged while they wait."""
    assert MAX_DELAY / timedelta(milliseconds=1) == MAX_RETRY_DELAY_MS
    assert MAX_DELAY < CONSUMER_TIMEOUT

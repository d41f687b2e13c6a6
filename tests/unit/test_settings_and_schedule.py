from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.errors import ConfigurationError, InvalidCron, InvalidInput
from app.misfire import Misfire
from app.schedule import Schedule
from app.settings import DEFAULT_BROKER_URL, Settings


def test_settings_defaults_and_overrides() -> None:
    assert Settings.from_env({}) == Settings()
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
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


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
    ],
)
def test_invalid_schedules_are_refused_with_the_value_named(
    schedule: Schedule, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        schedule.validated({"probe"})
    assert message in str(caught.value)

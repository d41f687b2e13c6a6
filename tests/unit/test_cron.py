"""Golden cases for app.cron: every expected instant is written out by hand, local and UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from app.cron import fires_between, next_fires, validate_cron, validate_timezone
from app.errors import InvalidCron, InvalidInput

NEW_YORK = ZoneInfo("America/New_York")


def local_and_utc(fires: list[datetime]) -> list[tuple[str, str]]:
    # isoformat carries the offset, so EDT and EST readings of the same wall time differ.
    return [(fire.isoformat(), fire.astimezone(UTC).isoformat()) for fire in fires]


def test_spring_forward_skipped_time_fires_once_after_the_gap() -> None:
    fires = next_fires("30 2 * * *", "America/New_York", datetime(2026, 3, 7, tzinfo=UTC), 3)
    assert local_and_utc(fires) == [
        ("2026-03-07T02:30:00-05:00", "2026-03-07T07:30:00+00:00"),
        ("2026-03-08T03:00:00-04:00", "2026-03-08T07:00:00+00:00"),
        ("2026-03-09T02:30:00-04:00", "2026-03-09T06:30:00+00:00"),
    ]


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    fires = next_fires("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC), 2)
    assert local_and_utc(fires) == [
        ("2026-11-01T01:30:00-04:00", "2026-11-01T05:30:00+00:00"),
        ("2026-11-02T01:30:00-05:00", "2026-11-02T06:30:00+00:00"),
    ]


def test_no_second_fire_when_asked_from_inside_the_repeated_hour() -> None:
    # 01:10 EST is after the 01:30 EDT fire; 01:30 EST must not fire.
    after = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    assert local_and_utc(next_fires("30 1 * * *", "America/New_York", after, 1)) == [
        ("2026-11-02T01:30:00-05:00", "2026-11-02T06:30:00+00:00"),
    ]


def test_hourly_through_the_fall_back_night_skips_the_repeated_hour() -> None:
    fires = next_fires("0 * * * *", "America/New_York", datetime(2026, 11, 1, 4, 30, tzinfo=UTC), 3)
    assert local_and_utc(fires) == [
        ("2026-11-01T01:00:00-04:00", "2026-11-01T05:00:00+00:00"),
        ("2026-11-01T02:00:00-05:00", "2026-11-01T07:00:00+00:00"),
        ("2026-11-01T03:00:00-05:00", "2026-11-01T08:00:00+00:00"),
    ]


def test_minute_steps_in_the_repeated_hour_fire_in_the_first_occurrence_only() -> None:
    fires = next_fires("*/15 1 * * *", "America/New_York", datetime(2026, 11, 1, 4, tzinfo=UTC), 5)
    assert local_and_utc(fires) == [
        ("2026-11-01T01:00:00-04:00", "2026-11-01T05:00:00+00:00"),
        ("2026-11-01T01:15:00-04:00", "2026-11-01T05:15:00+00:00"),
        ("2026-11-01T01:30:00-04:00", "2026-11-01T05:30:00+00:00"),
        ("2026-11-01T01:45:00-04:00", "2026-11-01T05:45:00+00:00"),
        ("2026-11-02T01:00:00-05:00", "2026-11-02T06:00:00+00:00"),
    ]


def test_every_minute_of_a_skipped_hour_collapses_into_one_fire() -> None:
    fires = next_fires("* 2 * * *", "America/New_York", datetime(2026, 3, 8, tzinfo=UTC), 2)
    assert local_and_utc(fires) == [
        ("2026-03-08T03:00:00-04:00", "2026-03-08T07:00:00+00:00"),
        ("2026-03-09T02:00:00-04:00", "2026-03-09T06:00:00+00:00"),
    ]


def test_cronsim_walks_real_time_when_minute_or_hour_has_a_star() -> None:
    # Why app.cron maps wall times itself: if these start passing, cronsim changed and the note can go.
    hourly = CronSim("0 * * * *", datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK))
    assert [next(hourly).isoformat() for _ in range(2)] == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
    ]
    skipped_hour = CronSim("* 2 * * *", datetime(2026, 3, 8, 1, 30, tzinfo=NEW_YORK))
    assert next(skipped_hour).isoformat() == "2026-03-09T02:00:00-04:00"


def test_weekdays_in_shanghai_skip_the_weekend() -> None:
    friday_after_nine = datetime(2026, 3, 6, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    fires = next_fires("0 9 * * 1-5", "Asia/Shanghai", friday_after_nine, 2)
    assert local_and_utc(fires) == [
        ("2026-03-09T09:00:00+08:00", "2026-03-09T01:00:00+00:00"),
        ("2026-03-10T09:00:00+08:00", "2026-03-10T01:00:00+00:00"),
    ]


def test_london_spring_forward() -> None:
    fires = next_fires("30 1 * * *", "Europe/London", datetime(2026, 3, 28, tzinfo=UTC), 3)
    assert local_and_utc(fires) == [
        ("2026-03-28T01:30:00+00:00", "2026-03-28T01:30:00+00:00"),
        ("2026-03-29T02:00:00+01:00", "2026-03-29T01:00:00+00:00"),
        ("2026-03-30T01:30:00+01:00", "2026-03-30T00:30:00+00:00"),
    ]


def test_london_fall_back() -> None:
    fires = next_fires("30 1 * * *", "Europe/London", datetime(2026, 10, 24, tzinfo=UTC), 3)
    assert local_and_utc(fires) == [
        ("2026-10-24T01:30:00+01:00", "2026-10-24T00:30:00+00:00"),
        ("2026-10-25T01:30:00+01:00", "2026-10-25T00:30:00+00:00"),
        ("2026-10-26T01:30:00+00:00", "2026-10-26T01:30:00+00:00"),
    ]


def test_leap_day() -> None:
    fires = next_fires("0 0 29 2 *", "UTC", datetime(2025, 1, 1, tzinfo=UTC), 2)
    assert [fire.isoformat() for fire in fires] == ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        # 2026-03-04 10:20 UTC is a Wednesday.
        ("@hourly", ["2026-03-04T11:00:00+00:00", "2026-03-04T12:00:00+00:00"]),
        ("@daily", ["2026-03-05T00:00:00+00:00", "2026-03-06T00:00:00+00:00"]),
        ("@midnight", ["2026-03-05T00:00:00+00:00", "2026-03-06T00:00:00+00:00"]),
        ("@weekly", ["2026-03-08T00:00:00+00:00", "2026-03-15T00:00:00+00:00"]),
        ("@monthly", ["2026-04-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"]),
        ("@yearly", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
        ("@annually", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
    ],
)
def test_aliases(alias: str, expected: list[str]) -> None:
    fires = next_fires(alias, "UTC", datetime(2026, 3, 4, 10, 20, tzinfo=UTC), 2)
    assert [fire.isoformat() for fire in fires] == expected


def test_next_fires_is_strictly_after_and_returned_in_the_schedule_zone() -> None:
    after = datetime(2026, 3, 4, 9, 0, tzinfo=timezone(timedelta(hours=-5)))  # 14:00 UTC, a fire instant
    fires = next_fires("0 * * * *", "Asia/Shanghai", after, 2)
    assert [fire.isoformat() for fire in fires] == ["2026-03-04T23:00:00+08:00", "2026-03-05T00:00:00+08:00"]
    assert all(fire.tzinfo == ZoneInfo("Asia/Shanghai") for fire in fires)


def test_next_fires_rejects_a_naive_time() -> None:
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        next_fires("* * * * *", "UTC", datetime(2026, 3, 4), 1)


def test_fires_between_is_inclusive_at_both_ends_and_limited() -> None:
    start = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    end = datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
    fires = fires_between("*/20 * * * *", "UTC", start, end, 10)
    assert [fire.isoformat() for fire in fires] == [
        "2026-03-04T12:00:00+00:00",
        "2026-03-04T12:20:00+00:00",
        "2026-03-04T12:40:00+00:00",
        "2026-03-04T13:00:00+00:00",
    ]
    assert fires_between("*/20 * * * *", "UTC", start, end, 2) == fires[:2]


def test_fires_between_returns_utc_across_a_gap() -> None:
    start = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    end = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # 04:00 EDT
    fires = fires_between("30 * * * *", "America/New_York", start, end, 10)
    assert [fire.isoformat() for fire in fires] == [
        "2026-03-08T06:30:00+00:00",  # 01:30 EST
        "2026-03-08T07:00:00+00:00",  # 02:30 does not exist: 03:00 EDT
        "2026-03-08T07:30:00+00:00",  # 03:30 EDT
    ]


@pytest.mark.parametrize(
    ("expr", "normalized"),
    [
        ("  0   9 * *\t1-5 ", "0 9 * * 1-5"),
        ("@DAILY", "0 0 * * *"),
        ("*/15 0-6,22,23 1,15 jan-mar,dec MON-fri", "*/15 0-6,22,23 1,15 jan-mar,dec MON-fri"),
        ("0 12 L * *", "0 12 L * *"),
        ("0 12 LW * *", "0 12 LW * *"),
        ("0 12 * * 5L", "0 12 * * 5L"),
        ("0 12 * * mon#2", "0 12 * * mon#2"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("5/10 * * * *", "5/10 * * * *"),
        ("0 0 30 2 mon", "0 0 30 2 mon"),  # day-of-month OR day-of-week: Mondays of February
        ("0 0 29 2 *", "0 0 29 2 *"),
    ],
)
def test_valid_expressions_are_normalized(expr: str, normalized: str) -> None:
    assert validate_cron(expr) == normalized


FIELDS = "expected 5 fields: minute hour day-of-month month day-of-week"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", 'invalid cron "61 * * * *": minute must be 0-59'),
        ("0 24 * * *", 'invalid cron "0 24 * * *": hour must be 0-23'),
        ("0 0 32 * *", 'invalid cron "0 0 32 * *": day-of-month must be 1-31'),
        ("0 0 0 * *", 'invalid cron "0 0 0 * *": day-of-month must be 1-31'),
        ("0 0 1 13 *", 'invalid cron "0 0 1 13 *": month must be 1-12 or jan-dec'),
        ("0 0 1 foo *", 'invalid cron "0 0 1 foo *": month must be 1-12 or jan-dec'),
        ("0 0 * * 8", 'invalid cron "0 0 * * 8": day-of-week must be 0-7 or sun-sat'),
        ("0 0 * * jan", 'invalid cron "0 0 * * jan": day-of-week must be 0-7 or sun-sat'),
        ("0-60 * * * *", 'invalid cron "0-60 * * * *": minute must be 0-59'),
        ("", f'invalid cron "": {FIELDS}, got 0'),
        ("* * * *", f'invalid cron "* * * *": {FIELDS}, got 4'),
        ("0 0 0 * * *", f'invalid cron "0 0 0 * * *": {FIELDS}, got 6; seconds and years are not supported'),
        (
            "0 0 0 * * * 2026",
            f'invalid cron "0 0 0 * * * 2026": {FIELDS}, got 7; seconds and years are not supported',
        ),
        ("*/0 * * * *", 'invalid cron "*/0 * * * *": minute step "*/0" must be a whole number of 1 or more, like */15'),
        ("*/ * * * *", 'invalid cron "*/ * * * *": minute step "*/" must be a whole number of 1 or more, like */15'),
        (
            "5-1 * * * *",
            'invalid cron "5-1 * * * *": minute range 5-1 is reversed; write the smaller value first: 1-5',
        ),
        (
            "0 0 * * fri-mon",
            'invalid cron "0 0 * * fri-mon": day-of-week range fri-mon is reversed; '
            "write the smaller value first: mon-fri",
        ),
        (
            "@every 5m",
            'invalid cron "@every 5m": unknown alias; use one of @hourly @daily @midnight @weekly @monthly '
            f"@yearly @annually or 5 fields: {FIELDS[len('expected 5 fields: ') :]}",
        ),
        (
            "@reboot",
            'invalid cron "@reboot": unknown alias; use one of @hourly @daily @midnight @weekly '
            "@monthly @yearly @annually or 5 fields: minute hour day-of-month month day-of-week",
        ),
        ("0 0 * * mon;tue", 'invalid cron "0 0 * * mon;tue": day-of-week has an unexpected character ";"'),
        ("0 9 ? * *", 'invalid cron "0 9 ? * *": day-of-month has an unexpected character "?"'),
        ("1,,2 * * * *", 'invalid cron "1,,2 * * * *": minute has an empty value; minute must be 0-59'),
        ("0 0 30 2 *", 'invalid cron "0 0 30 2 *": day-of-month 30 never occurs in month 2'),
        ("0 0 31 4 *", 'invalid cron "0 0 31 4 *": day-of-month 31 never occurs in month 4'),
        (
            "0 0 */15 2 mon#5",
            'invalid cron "0 0 */15 2 mon#5": it never fires: no date matches its day-of-month, month and day-of-week',
        ),
        (
            "0 0 * * mon#6",
            'invalid cron "0 0 * * mon#6": day-of-week "mon#6": the week after # must be 1-5, like mon#2',
        ),
        (
            "0 0 * * friL",
            'invalid cron "0 0 * * friL": day-of-week "friL": put a day number before L, like 5L for the last Friday',
        ),
        ("0 0 L/2 * *", 'invalid cron "0 0 L/2 * *": day-of-month must be 1-31'),
        ("1.5 * * * *", 'invalid cron "1.5 * * * *": minute has an unexpected character "."'),
    ],
)
def test_invalid_expressions_say_what_to_fix(expr: str, message: str) -> None:
    with pytest.raises(InvalidCron, match=f"^{re.escape(message)}$"):
        validate_cron(expr)


def test_next_fires_validates_the_expression() -> None:
    with pytest.raises(InvalidCron, match=re.escape('invalid cron "61 * * * *": minute must be 0-59')):
        next_fires("61 * * * *", "UTC", datetime(2026, 1, 1, tzinfo=UTC), 1)


def test_time_zones() -> None:
    assert validate_timezone("Asia/Shanghai") == ZoneInfo("Asia/Shanghai")
    for name in ("Mars/Base", "", "America", "../etc/passwd", "utc "):
        expected = f'unknown time zone "{name}": use an IANA name like UTC, Asia/Shanghai or America/New_York'
        with pytest.raises(InvalidInput, match=f"^{re.escape(expected)}$"):
            validate_timezone(name)


def test_instants_end_with_the_calendar_instead_of_overflowing() -> None:
    last = datetime(9999, 12, 31, 23, 57, tzinfo=UTC)
    assert next_fires("* * * * *", "UTC", last, 5) == [last.replace(minute=58), last.replace(minute=59)]
    assert fires_between("0 0 * * *", "Asia/Shanghai", last, last.replace(minute=59), 10) == []

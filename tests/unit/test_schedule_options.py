"""Adding an option is declaring it: a dataclass with one more option gets its CLI flag, its column value, its
message option and its JSON output from the declaration alone (app/schedule_options.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta

import pytest

from app.errors import InvalidInput
from app.schedule import OPTIONS, Schedule
from app.schedule_options import (
    DURATION,
    SWITCH,
    declared_options,
    from_row,
    message_values,
    option,
    parse_cli,
    to_db,
    to_json,
)


@dataclass(frozen=True)
class WithGrace(Schedule):
    grace: timedelta = option(timedelta(seconds=5), DURATION, "how long to wait", metavar="DUR", message="grace_ms")
    dry_run: bool = option(False, SWITCH, "run without side effects")


EXTENDED = declared_options(WithGrace)


def parser() -> argparse.ArgumentParser:
    """The flags the way ``punchclock schedules add`` builds them (app/cli/schedules.py)."""
    parsed = argparse.ArgumentParser()
    for spec in EXTENDED:
        shown = {"metavar": spec.metavar} if spec.metavar else {}
        parsed.add_argument(spec.cli_flag, dest=spec.name, help=spec.help, **shown, **spec.kind.argparse)
    return parsed


def test_a_new_option_is_derived_everywhere_from_its_declaration() -> None:
    assert [spec.name for spec in EXTENDED] == [*(spec.name for spec in OPTIONS), "grace", "dry_run"]
    values = parse_cli(EXTENDED, parser().parse_args(["--grace", "1m30s", "--dry-run", "--tz", "Asia/Tokyo"]))
    assert (values["grace"], values["dry_run"], values["timezone"]) == (timedelta(seconds=90), True, "Asia/Tokyo")
    schedule = WithGrace("a", "probe", "* * * * *", **values)
    record = to_db(EXTENDED, schedule)
    assert (record["grace"], record["dry_run"]) == ("0 days 90 seconds 0 microseconds", True)
    # a row as asyncpg returns it: intervals as timedeltas, arrays as lists, text as str
    row = {**vars(schedule), "notify": [], "after": [], "misfire": "latest"}
    assert WithGrace("a", "probe", "* * * * *", **from_row(EXTENDED, row)) == schedule
    assert message_values(EXTENDED, vars(schedule))["grace_ms"] == 90_000
    shown = to_json(EXTENDED, schedule)
    assert (shown["grace_seconds"], shown["dry_run"]) == (90, True)


def test_a_flag_given_badly_is_named() -> None:
    with pytest.raises(InvalidInput, match=r'^--grace: invalid duration "soon"'):
        parse_cli(EXTENDED, parser().parse_args(["--grace", "soon"]))


def test_flags_not_given_leave_the_defaults() -> None:
    values = parse_cli(EXTENDED, parser().parse_args([]))
    assert values == {"retry_timeouts": False, "notify_on_recovery": False, "dry_run": False}
    assert WithGrace("a", "probe", None, **values) == WithGrace("a", "probe", None)

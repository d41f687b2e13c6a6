"""The misfire decision on hand-written timelines; no clock is read anywhere."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.errors import InvalidInput
from app.misfire import RECORD_HORIZON, FireDecision, Misfire, due_fires, parse_misfire

HOUR = timedelta(hours=1)


def at(hour: int, minute: int, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2026, 5, 4, hour, minute, second, microsecond, tzinfo=UTC)


def minutes(first: int, last: int) -> tuple[datetime, ...]:
    """12:first .. 12:last, every minute."""
    return tuple(at(12, minute) for minute in range(first, last + 1))


# A `* * * * *` schedule last fired 12:00; the clock was down until 12:10:45.
DOWN_UNTIL = at(12, 10, 45)


def test_skip_after_downtime_fires_nothing_and_records_every_instant_missed() -> None:
    decision = due_fires("* * * * *", "UTC", Misfire.SKIP, HOUR, at(12, 1), DOWN_UNTIL)
    assert decision == FireDecision(fire=(), missed=minutes(1, 10), next_fire_at=at(12, 11), unrecorded_before=None)


def test_latest_after_downtime_fires_the_most_recent_instant_once() -> None:
    decision = due_fires("* * * * *", "UTC", Misfire.LATEST, HOUR, at(12, 1), DOWN_UNTIL)
    assert decision == FireDecision(
        fire=(at(12, 10),), missed=minutes(1, 9), next_fire_at=at(12, 11), unrecorded_before=None
    )


def test_all_after_downtime_fires_every_instant_oldest_first() -> None:
    decision = due_fires("* * * * *", "UTC", Misfire.ALL, HOUR, at(12, 1), DOWN_UNTIL)
    assert decision == FireDecision(fire=minutes(1, 10), missed=(), next_fire_at=at(12, 11), unrecorded_before=None)


def test_all_never_fires_older_than_the_catchup_window() -> None:
    window = timedelta(minutes=5)
    decision = due_fires("* * * * *", "UTC", Misfire.ALL, window, at(12, 1), DOWN_UNTIL)
    assert decision == FireDecision(
        fire=minutes(6, 10), missed=minutes(1, 5), next_fire_at=at(12, 11), unrecorded_before=None
    )


def test_latest_outside_the_catchup_window_fires_nothing() -> None:
    decision = due_fires("0 * * * *", "UTC", Misfire.LATEST, timedelta(minutes=5), at(10, 0), at(12, 10))
    assert decision.fire == ()
    assert decision.missed == (at(10, 0), at(11, 0), at(12, 0))
    assert decision.next_fire_at == at(13, 0)


@pytest.mark.parametrize("policy", list(Misfire))
def test_on_time_tick_fires_the_due_instant_under_every_policy(policy: Misfire) -> None:
    decision = due_fires("* * * * *", "UTC", policy, HOUR, at(12, 1), at(12, 1, 0, 500_000))
    assert decision == FireDecision(fire=(at(12, 1),), missed=(), next_fire_at=at(12, 2), unrecorded_before=None)


@pytest.mark.parametrize("policy", list(Misfire))
def test_on_time_tick_fires_even_with_a_zero_catchup_window(policy: Misfire) -> None:
    decision = due_fires("* * * * *", "UTC", policy, timedelta(0), at(12, 1), at(12, 1, 29))
    assert decision.fire == (at(12, 1),)


def test_skip_treats_a_tick_30_seconds_late_as_missed() -> None:
    decision = due_fires("* * * * *", "UTC", Misfire.SKIP, HOUR, at(12, 1), at(12, 1, 30))
    assert (decision.fire, decision.missed) == ((), (at(12, 1),))


@pytest.mark.parametrize("policy", list(Misfire))
def test_nothing_due_leaves_next_fire_at_alone(policy: Misfire) -> None:
    decision = due_fires("*/5 * * * *", "UTC", policy, HOUR, at(12, 5), at(12, 3, 10))
    assert decision == FireDecision(fire=(), missed=(), next_fire_at=at(12, 5), unrecorded_before=None)


def test_next_fire_at_never_moves_backwards() -> None:
    # next_fire_at ahead of the cron (e.g. set by hand): nothing before it fires and it is kept.
    decision = due_fires("* * * * *", "UTC", Misfire.ALL, HOUR, at(12, 30), at(12, 10, 5))
    assert decision == FireDecision(fire=(), missed=(), next_fire_at=at(12, 30), unrecorded_before=None)


def test_catch_up_follows_the_schedule_zone_through_a_gap() -> None:
    # 30 2 * * * in New York: the 2026-03-08 instant is 03:00 EDT = 07:00 UTC; the clock is back at 07:20.
    now = datetime(2026, 3, 8, 7, 20, tzinfo=UTC)
    due_at = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    decision = due_fires("30 2 * * *", "America/New_York", Misfire.LATEST, HOUR, due_at, now)
    assert decision == FireDecision(
        fire=(due_at,),
        missed=(),
        next_fire_at=datetime(2026, 3, 9, 6, 30, tzinfo=UTC),
        unrecorded_before=None,
    )


@pytest.mark.timeout(10)
def test_a_month_down_records_at_most_one_day_of_missed_instants() -> None:
    now = datetime(2026, 5, 31, 12, 10, 45, tzinfo=UTC)
    last_due = datetime(2026, 5, 1, 12, 1, tzinfo=UTC)
    decision = due_fires("* * * * *", "UTC", Misfire.LATEST, HOUR, last_due, now)
    assert decision.fire == (datetime(2026, 5, 31, 12, 10, tzinfo=UTC),)
    assert len(decision.missed) == 1439
    assert decision.missed[0] == datetime(2026, 5, 30, 12, 11, tzinfo=UTC)
    assert decision.missed[-1] == datetime(2026, 5, 31, 12, 9, tzinfo=UTC)
    assert decision.unrecorded_before == datetime(2026, 5, 30, 12, 10, 45, tzinfo=UTC)
    assert decision.unrecorded_before == now - RECORD_HORIZON
    assert decision.next_fire_at == datetime(2026, 5, 31, 12, 11, tzinfo=UTC)


def test_a_catchup_window_longer_than_the_horizon_widens_it() -> None:
    now = datetime(2026, 5, 10, 0, 30, tzinfo=UTC)
    decision = due_fires("0 0 * * *", "UTC", Misfire.ALL, timedelta(days=3), datetime(2026, 5, 1, tzinfo=UTC), now)
    assert decision.fire == tuple(datetime(2026, 5, day, tzinfo=UTC) for day in (8, 9, 10))
    assert decision.missed == ()
    assert decision.unrecorded_before == datetime(2026, 5, 7, 0, 30, tzinfo=UTC)


def test_no_unrecorded_mark_when_the_gap_held_no_instants() -> None:
    # next_fire_at is far back but no instant of this yearly schedule lies before the horizon.
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    decision = due_fires("@yearly", "UTC", Misfire.LATEST, HOUR, datetime(2025, 1, 2, tzinfo=UTC), now)
    assert decision.fire == (datetime(2026, 1, 1, tzinfo=UTC),)
    assert decision.unrecorded_before is None


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        due_fires("* * * * *", "UTC", Misfire.ALL, HOUR, at(12, 1), datetime(2026, 5, 4, 12, 10))


@pytest.mark.parametrize(
    ("text", "policy"), [("skip", Misfire.SKIP), (" Latest ", Misfire.LATEST), ("ALL", Misfire.ALL)]
)
def test_parse_misfire(text: str, policy: Misfire) -> None:
    assert parse_misfire(text) is policy


def test_parse_misfire_names_the_choices() -> None:
    message = 'invalid misfire policy "newest": use one of skip, latest, all'
    with pytest.raises(InvalidInput, match=f"^{re.escape(message)}$"):
        parse_misfire("newest")

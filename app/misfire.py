"""The misfire decision: which due cron instants a tick fires and which it records as missed.

A tick asks ``due_fires`` once per due schedule. Instants are due from the schedule's ``next_fire_at``
(the earliest instant not yet fired) up to ``now``. An instant fired within ``ON_TIME_GRACE`` of its time is
on time and fires under every policy; older ones were missed while the clock was down (docs/design.md, "Misfire"):

- ``skip``: fire only the on-time instant; record every older one ``missed``;
- ``latest`` (default): fire the most recent due instant if it is within ``catchup_window``; the rest missed;
- ``all``: fire every due instant within ``catchup_window``, oldest first; older ones missed.

Missed instants are recorded one by one only back to ``max(catchup_window, RECORD_HORIZON)`` before ``now``,
so a clock down for a month costs one day of rows, not a month of them; ``unrecorded_before`` tells the caller
where recording stopped so it can log it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from app.choices import parse_choice
from app.cron import aware_utc, fires_between, next_fires

ON_TIME_GRACE = timedelta(seconds=30)
"""An instant fired more than this after it was due was missed: periodiq drops ticks more than 30 s late,
so a later fire means ticks were lost."""

RECORD_HORIZON = timedelta(days=1)
"""Missed instants older than ``max(catchup_window, RECORD_HORIZON)`` before now are not recorded one by
one; ``FireDecision.unrecorded_before`` says where recording stopped."""

_MICROSECOND = timedelta(microseconds=1)


class Misfire(StrEnum):
    """What a schedule does with instants missed while the clock was down."""

    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


def parse_misfire(text: str) -> Misfire:
    return parse_choice(Misfire, text, "misfire policy")


@dataclass(frozen=True)
class FireDecision:
    """The outcome for one schedule at one tick; every datetime is UTC and every tuple oldest first."""

    fire: tuple[datetime, ...]
    """Instants to run now."""
    missed: tuple[datetime, ...]
    """Instants to record as runs in state ``missed``."""
    next_fire_at: datetime
    """The schedule's new ``next_fire_at``: its first instant strictly after now."""
    unrecorded_before: datetime | None
    """Set when instants from the old ``next_fire_at`` up to this moment were dropped without a record."""


def due_fires(
    cron: str,
    tz: str,
    misfire: Misfire,
    catchup_window: timedelta,
    next_fire_at: datetime,
    now: datetime,
) -> FireDecision:
    """Decide which instants ``t`` of ``cron`` in zone ``tz``, ``next_fire_at <= t <= now``, fire or are missed.

    Every due instant is either fired or missed: ``missed + fire`` is the due instants in order (back to the
    record horizon), and ``fire`` is empty, one instant, or the newest run of them. An on-time instant
    (``now - t < ON_TIME_GRACE``) fires under every policy, even with a ``catchup_window`` shorter than the
    grace. The new ``next_fire_at`` is the first instant after ``now`` and not before the old one, so a
    schedule never moves backwards. ``next_fire_at`` and ``now`` must be timezone-aware (``ValueError``);
    ``InvalidCron`` / ``InvalidInput`` for a bad expression or zone.
    """
    now = aware_utc(now, "now")
    next_fire_at = aware_utc(next_fire_at, "next_fire_at")
    look_from = max(next_fire_at, now - max(catchup_window, RECORD_HORIZON))
    # A 5-field cron fires at most once a minute, so this bounds the list without cutting it short.
    most = (now - look_from) // timedelta(minutes=1) + 2
    due = fires_between(cron, tz, look_from, now, max(most, 0))
    unrecorded_before = None
    if next_fire_at < look_from and fires_between(cron, tz, next_fire_at, look_from - _MICROSECOND, 1):
        unrecorded_before = look_from

    if misfire is Misfire.SKIP:
        fire = [t for t in due if now - t < ON_TIME_GRACE]
    else:
        fire = [t for t in due if now - t < ON_TIME_GRACE or now - t <= catchup_window]
        if misfire is Misfire.LATEST:
            fire = fire[-1:]
    missed = due[: len(due) - len(fire)]  # ``fire`` is always the newest part of ``due``

    (following,) = next_fires(cron, tz, max(now, next_fire_at - _MICROSECOND), 1)
    return FireDecision(
        fire=tuple(fire),
        missed=tuple(missed),
        next_fire_at=following.astimezone(UTC),
        unrecorded_before=unrecorded_before,
    )

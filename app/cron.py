"""Cron expressions with IANA time zones: validation with our own messages, and fire instants.

Accepted: the standard 5 fields ``minute hour day-of-month month day-of-week`` with lists, ranges, steps,
names (``jan``-``dec``, ``sun``-``sat``), ``L`` / ``LW`` in day-of-month and ``5L`` / ``mon#2`` in
day-of-week (cronsim's extensions), and the aliases ``@hourly @daily @midnight @weekly @monthly @yearly
@annually``. As in Vixie cron, day-of-month and day-of-week are OR-ed unless one of them starts with ``*``.
Seconds and year fields are rejected: cronsim would read a 6th field as seconds.

Time zones and DST (docs/design.md, "Cron"): the expression is matched against the schedule's local wall clock,
then each matching wall time becomes one instant:

- a wall time that happens once is that instant;
- a wall time skipped by spring-forward fires once, at the first instant after the gap (``30 2 * * *`` in
  New York on 2026-03-08 fires at 03:00 EDT); several skipped wall times, and a regular fire at the end of
  the gap, collapse into that one fire;
- a wall time that happens twice fires once, at its first occurrence. This holds for every expression:
  ``0 * * * *`` fires at 01:00 EDT on a New York fall-back night and not again at 01:00 EST, and
  ``*/15 1 * * *`` fires 01:00-01:45 EDT only. The repeated hour is never run twice.

cronsim 2.8 applies these rules only when both minute and hour are fixed numbers; with a ``*`` in either it
walks real time, so it fires the repeated hour twice and never fires a skipped local hour (``* 2 * * *``).
So we always let cronsim walk naive wall-clock time and map wall times to instants here.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from app.errors import InvalidCron, InvalidInput

ALIASES: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_FIELD_NAMES = "minute hour day-of-month month day-of-week"
_CRON_CHARACTERS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*,-/#")
# Days in each month of a leap year: a day-of-month above all of its months' lengths never occurs.
_MONTH_LENGTH = {month: calendar.monthrange(2000, month)[1] for month in range(1, 13)}
# cronsim gives up 50 years past its start; a satisfiable expression fires within 40 years of any date
# (the longest wait is for February 29 on a given weekday).
_PROBE_FROM = datetime(2000, 1, 1)
_SECOND = timedelta(seconds=1)


class _Fail:
    """Builds the ``InvalidCron`` of one expression, so that every message starts the same way."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def __call__(self, reason: str) -> InvalidCron:
        return InvalidCron(f'invalid cron "{self.expr}": {reason}')


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    allowed: str
    names: tuple[str, ...] = ()
    first_name_value: int = 0

    def value(self, token: str, fail: _Fail) -> int:
        if not token:
            raise fail(f"{self.name} has an empty value; {self.name} must be {self.allowed}")
        if token.upper() in self.names:
            return self.names.index(token.upper()) + self.first_name_value
        if not token.isdigit() or not self.low <= int(token) <= self.high:
            raise fail(f"{self.name} must be {self.allowed}")
        return int(token)


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MINUTE = _Field("minute", 0, 59, "0-59")
_HOUR = _Field("hour", 0, 23, "0-23")
_DAY = _Field("day-of-month", 1, 31, "1-31")
_MONTH = _Field("month", 1, 12, "1-12 or jan-dec", _MONTHS, first_name_value=1)
_WEEKDAY = _Field("day-of-week", 0, 7, "0-7 or sun-sat", _WEEKDAYS)
_FIELDS = (_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY)


@lru_cache(maxsize=4096)
def validate_cron(expr: str) -> str:
    """Return ``expr`` as a normalized 5-field expression, or raise ``InvalidCron`` saying what to fix.

    Aliases become their 5 fields and runs of whitespace become one space; fields keep their spelling.
    Rejected: a field count other than 5 (6 and 7 fields, seconds and years, are not supported), values
    out of a field's range, steps of 0, reversed ranges, unknown aliases, characters cron does not use,
    and dates that never occur (``0 0 30 2 *``). Cached: the tick re-validates every due schedule's cron,
    and the check (a parse plus a probe of cronsim) costs more than the firing arithmetic itself.
    """
    text = " ".join(expr.split())
    fail = _Fail(text)
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise fail(f"unknown alias; use one of {' '.join(ALIASES)} or 5 fields: {_FIELD_NAMES}")
        return ALIASES[text.lower()]

    specs = text.split(" ") if text else []
    if len(specs) != 5:
        unsupported = "; seconds and years are not supported" if len(specs) in (6, 7) else ""
        raise fail(f"expected 5 fields: {_FIELD_NAMES}, got {len(specs)}{unsupported}")
    values = [_parse_field(field, spec, fail) for field, spec in zip(_FIELDS, specs, strict=True)]

    # cronsim refuses a day-of-month no listed month has (with a message of its own): say it our way first.
    days, months = values[2], values[3]
    day_spec, month_spec, weekday_spec = specs[2], specs[3], specs[4]
    days_and_weekdays = day_spec.startswith("*") or weekday_spec.startswith("*")
    numbered_days = all(term.upper() not in ("L", "LW") for term in day_spec.split(","))
    if days_and_weekdays and numbered_days and min(days) > max(_MONTH_LENGTH[m] for m in months):
        raise fail(f"day-of-month {day_spec} never occurs in month {month_spec}")
    try:
        next(CronSim(text, _PROBE_FROM))
    except CronSimError:  # our checks should have caught it first: keep cronsim's wording out of messages
        raise fail(f"it cannot be read as 5 fields: {_FIELD_NAMES}") from None
    except StopIteration:
        raise fail("it never fires: no date matches its day-of-month, month and day-of-week") from None
    return text


def validate_timezone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name`` (``UTC``, ``Asia/Shanghai``), or raise ``InvalidInput``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f'unknown time zone "{name}": use an IANA name like UTC, Asia/Shanghai or America/New_York'
        ) from None


def next_fires(cron: str, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire instants of ``cron`` in zone ``tz`` strictly after ``after``, in ``tz``.

    ``after`` must be timezone-aware (``ValueError`` otherwise); any zone will do. Results are strictly
    increasing, follow the DST rules of the module docstring, and are expressed in the schedule's zone.
    Raises ``InvalidCron`` / ``InvalidInput`` for a bad expression or zone.
    """
    zone = validate_timezone(tz)
    instants = _instants(validate_cron(cron), zone, aware_utc(after, "after"))
    return [instant.astimezone(zone) for instant in islice(instants, n)]


def fires_between(cron: str, tz: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Fire instants ``t`` with ``start <= t <= end``, oldest first, at most ``limit`` of them, in UTC.

    ``start`` and ``end`` must be timezone-aware (``ValueError`` otherwise).
    """
    last = aware_utc(end, "end")
    first = aware_utc(start, "start")
    instants = _instants(validate_cron(cron), validate_timezone(tz), first - timedelta(microseconds=1))
    return list(islice(takewhile(lambda instant: instant <= last, instants), limit))


def aware_utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC; ``ValueError`` if it is naive, since a naive time is ambiguous across zones."""
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _parse_field(field: _Field, spec: str, fail: _Fail) -> set[int]:
    """The plain values ``spec`` lists; ``L``, ``LW``, ``5L`` and ``mon#2`` are checked but not listed."""
    unknown = [character for character in spec if character not in _CRON_CHARACTERS]
    if unknown:
        raise fail(f'{field.name} has an unexpected character "{unknown[0]}"')
    values: set[int] = set()
    for term in spec.split(","):
        values |= _parse_term(field, term, fail)
    return values


def _parse_term(field: _Field, term: str, fail: _Fail) -> set[int]:
    upper = term.upper()
    if field is _DAY and upper in ("L", "LW"):
        return set()
    if field is _WEEKDAY and upper.endswith("L"):
        if not term[:-1].isdigit():
            raise fail(f'day-of-week "{term}": put a day number before L, like 5L for the last Friday')
        field.value(term[:-1], fail)
        return set()
    if field is _WEEKDAY and "#" in term:
        day, _, week = term.partition("#")
        field.value(day, fail)
        if week not in ("1", "2", "3", "4", "5"):
            raise fail(f'day-of-week "{term}": the week after # must be 1-5, like mon#2')
        return set()

    base, slash, step = term.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        raise fail(f'{field.name} step "{term}" must be a whole number of 1 or more, like */15')
    if base == "*":
        low, high = field.low, field.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = field.value(first, fail), field.value(last, fail)
        if high < low:
            raise fail(f"{field.name} range {base} is reversed; write the smaller value first: {last}-{first}")
    else:
        low = field.value(base, fail)
        high = field.high if slash else low
    return set(range(low, high + 1, int(step) if slash else 1))


def _instants(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC) of a validated ``expr`` strictly after ``after`` (UTC), strictly increasing.

    cronsim walks naive wall-clock time from the wall time of ``after``; each match becomes an instant by the
    DST rules. Along the wall clock those instants never decrease, so keeping only the ones later than the
    last kept drops what lies before ``after`` (when it is in a repeated hour) and merges the wall times of
    one gap into a single fire. The instants end with the calendar: Python's dates stop at the year 9999.
    """
    floor = after
    try:
        walls = iter(CronSim(expr, _wall_time(after, zone)))
    except OverflowError:  # the local wall time of ``after`` is already past the year 9999
        return
    while True:
        try:
            wall = next(walls)
            instant = _instant_of(wall, zone)
        except (StopIteration, OverflowError):
            return
        if instant > floor:
            floor = instant
            yield instant


def _instant_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a naive local ``wall`` time fires at: its first occurrence, or the end of its gap."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0 is the earlier of two occurrences
    if _wall_time(instant, zone) == wall:
        return instant
    # ``wall`` falls in a spring-forward gap. Read with the offset from before the gap it is an instant after
    # the transition, read with the offset from after it an instant before: bisect for the transition.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while instant - before > _SECOND:
        middle = before + (instant - before) // _SECOND // 2 * _SECOND
        if _wall_time(middle, zone) > wall:
            instant = middle
        else:
            before = middle
    return instant


def _wall_time(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)

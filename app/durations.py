"""Durations as people type them: ``90s``, ``10m``, ``1h30m``, ``2d``, ``500ms``.

Used for timeouts, catch-up windows, lock TTLs and backoff bounds in schedules and on the CLI. Units are
``d`` (24 hours, not a calendar day), ``h``, ``m`` (minutes, never months), ``s`` and ``ms``; a bare integer
means seconds. ``format_duration`` writes the same compact form back, so the two round-trip; it is the one way
every duration is written in text (options, run and step durations, stats, errors).
"""

from __future__ import annotations

import re
from datetime import timedelta

from app.errors import InvalidInput

_UNITS: dict[str, timedelta] = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_RANK = {unit: rank for rank, unit in enumerate(_UNITS)}
# ``ms`` is tried before ``m`` so that ``500ms`` is not read as 500 minutes followed by garbage.
_PART = re.compile(r"([0-9]+)(ms|d|h|m|s)")
_HOW = "use a number with a unit s, m, h or d, like 90s, 10m, 1h, 2d"


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``1h30m``, ``500ms`` or a bare number of seconds (``"30"``) into a timedelta.

    Units must appear largest first, each at most once (``1h30m``, not ``30m1h``). Surrounding whitespace is
    ignored. Raises ``InvalidInput`` naming the value and the fix for anything else: empty text, a sign,
    decimals, unknown units or a value too large to represent.
    """
    value = text.strip()
    if value.startswith("-"):
        raise InvalidInput(f'invalid duration "{text}": it must not be negative; {_HOW}')
    if value.isascii() and value.isdigit():
        return _scaled(text, int(value), _UNITS["s"])

    total = timedelta(0)
    position = 0
    last_rank = -1
    for part in _PART.finditer(value):
        if part.start() != position:
            break
        number, unit = part.groups()
        if _RANK[unit] <= last_rank:
            raise InvalidInput(f'invalid duration "{text}": write each unit once, largest first, like 1h30m or 2m30s')
        last_rank = _RANK[unit]
        total += _scaled(text, int(number), _UNITS[unit])
        position = part.end()
    if not value or position != len(value):
        raise InvalidInput(f'invalid duration "{text}": {_HOW}')
    return total


def format_duration(td: timedelta, *, precision: timedelta = _UNITS["ms"]) -> str:
    """Write ``td`` in the compact form ``parse_duration`` reads: ``1h30m``, ``1m30s``, ``500ms``, ``0s``.

    Negative durations get a leading ``-`` (for display only: ``parse_duration`` rejects them). Precision
    below one millisecond is dropped; a coarser ``precision`` (a measured duration, an estimate: no more digits
    than are meaningful) rounds ``td`` to a multiple of it, halves up.
    """
    if td < timedelta(0):
        return "-" + format_duration(-td, precision=precision)
    remaining = td if precision <= _UNITS["ms"] else (td + precision / 2) // precision * precision
    parts: list[str] = []
    for unit, size in _UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _scaled(text: str, count: int, unit: timedelta) -> timedelta:
    try:
        return count * unit
    except OverflowError:
        raise InvalidInput(f'invalid duration "{text}": it is too large; {_HOW}') from None

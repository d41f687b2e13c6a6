"""Instants as punchclock prints them: ISO 8601, one form in text and in JSON.

In a schedule's zone with its offset (``2026-03-08T03:00:00-04:00``); in UTC, and at any offset of zero, with
``Z`` (``2026-03-08T07:00:00Z``), never ``+00:00``, so one pattern matches every instant printed. Text is to the
second, which is what people read; JSON is to the millisecond (``2026-03-08T07:00:00.123Z``, always UTC), the
precision of the durations next to it. ``datetime.fromisoformat`` reads both forms back.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def format_instant(moment: datetime, zone: tzinfo = UTC, *, milliseconds: bool = False) -> str:
    """``moment`` in ``zone`` (UTC by default) with its offset, ``Z`` for an offset of zero; to the second, or
    to the millisecond."""
    shown = moment.astimezone(zone).isoformat(timespec="milliseconds" if milliseconds else "seconds")
    return shown[: -len("+00:00")] + "Z" if shown.endswith("+00:00") else shown

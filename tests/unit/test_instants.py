"""app.instants: one way to print an instant, ``Z`` for UTC, the zone's offset elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.instants import format_instant

MOMENT = datetime(2026, 3, 8, 7, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "milliseconds", "text"),
    [
        (UTC, False, "2026-03-08T07:00:00Z"),
        (UTC, True, "2026-03-08T07:00:00.123Z"),
        (ZoneInfo("UTC"), False, "2026-03-08T07:00:00Z"),
        (ZoneInfo("Europe/London"), False, "2026-03-08T07:00:00Z"),  # GMT in winter: an offset of zero
        (ZoneInfo("America/New_York"), False, "2026-03-08T03:00:00-04:00"),
        (ZoneInfo("Asia/Kolkata"), True, "2026-03-08T12:30:00.123+05:30"),
    ],
)
def test_format_instant(zone: ZoneInfo, milliseconds: bool, text: str) -> None:
    assert format_instant(MOMENT, zone, milliseconds=milliseconds) == text
    assert datetime.fromisoformat(text) == MOMENT.replace(microsecond=123000 if milliseconds else 0)


def test_an_instant_given_at_another_offset_is_shown_in_utc_by_default() -> None:
    moment = datetime(2026, 3, 8, 2, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert format_instant(moment) == "2026-03-08T07:00:00Z"

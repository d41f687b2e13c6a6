from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.durations import format_duration, parse_duration
from app.errors import InvalidInput

HOW = "use a number with a unit s, m, h or d, like 90s, 10m, 1h, 2d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("30", timedelta(seconds=30)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        (" 25m ", timedelta(minutes=25)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10x", f'invalid duration "10x": {HOW}'),
        ("", f'invalid duration "": {HOW}'),
        ("   ", f'invalid duration "   ": {HOW}'),
        ("h", f'invalid duration "h": {HOW}'),
        ("1.5h", f'invalid duration "1.5h": {HOW}'),
        ("10M", f'invalid duration "10M": {HOW}'),
        ("1h 30m", f'invalid duration "1h 30m": {HOW}'),
        ("1h30", f'invalid duration "1h30": {HOW}'),
        ("+5s", f'invalid duration "+5s": {HOW}'),
        ("-5s", f'invalid duration "-5s": it must not be negative; {HOW}'),
        ("-30", f'invalid duration "-30": it must not be negative; {HOW}'),
        ("30m1h", 'invalid duration "30m1h": write each unit once, largest first, like 1h30m or 2m30s'),
        ("1m1m", 'invalid duration "1m1m": write each unit once, largest first, like 1h30m or 2m30s'),
        ("99999999999d", f'invalid duration "99999999999d": it is too large; {HOW}'),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{re.escape(message)}$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(days=2), "2d"),
        (timedelta(days=1, seconds=1, milliseconds=1), "1d1s1ms"),
        (timedelta(microseconds=1500), "1ms"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@pytest.mark.parametrize(
    ("td", "precision", "text"),
    [
        (timedelta(seconds=4.44), timedelta(milliseconds=100), "4s400ms"),
        (timedelta(seconds=4.45), timedelta(milliseconds=100), "4s500ms"),  # halves up
        (timedelta(seconds=59.96), timedelta(milliseconds=100), "1m"),
        (timedelta(minutes=2, seconds=5.4), timedelta(seconds=1), "2m5s"),
        (timedelta(seconds=-1.26), timedelta(milliseconds=100), "-1s300ms"),
    ],
)
def test_format_to_a_precision(td: timedelta, precision: timedelta, text: str) -> None:
    assert format_duration(td, precision=precision) == text


@pytest.mark.parametrize("text", ["1h30m", "1m30s", "0s", "500ms", "2d", "1d23h59m59s999ms", "45m"])
def test_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)

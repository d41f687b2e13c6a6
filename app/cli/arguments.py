"""Reading option values the CLI takes as text: JSON objects, instants, and values parsed by the core.

Each raises :class:`InvalidInput` (exit code 2) naming the option, the bad value and the expected form.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from app.errors import InvalidInput
from app.jsonb import jsonb_problem

T = TypeVar("T")

_JSON_EXAMPLE = """'{"seconds": 1}'"""
_SHOWN = 100  # characters of a bad value repeated in its error message
_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def json_object(option: str, text: str) -> dict[str, Any]:
    """``text`` as a JSON object (the keyword arguments of an actor) that PostgreSQL's jsonb can store: Python's
    json also reads NaN, Infinity, ``\\u0000`` and lone surrogates, which jsonb refuses with an error of its own."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"invalid {option} {_shown(text)}: not JSON ({exc.msg} at column {exc.colno}); pass an object like"
            f" {_JSON_EXAMPLE}"
        ) from None
    except ValueError:  # an integer longer than Python converts from text (sys.get_int_max_str_digits())
        raise InvalidInput(
            f"invalid {option} {_shown(text)}: a number has more than {sys.get_int_max_str_digits()} digits;"
            " pass it as a string"
        ) from None
    except RecursionError:
        raise InvalidInput(f"invalid {option} {_shown(text)}: nested too deeply; flatten it") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise InvalidInput(
            f"invalid {option} {_shown(text)}: it is {kind}, not a JSON object; pass one like {_JSON_EXAMPLE}"
        )
    problem = jsonb_problem(value, "args")
    if problem:
        raise InvalidInput(f"invalid {option} {_shown(text)}: {problem}")
    return value


def _shown(text: str) -> str:
    """``text`` quoted for a message; a long one cut short, so the error stays readable."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}… ({len(text):,} characters)"


def instant(option: str, text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date-time; one without an offset is read in ``zone`` (the schedule's)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"invalid {option} {_shown(text)}: use ISO 8601, like 2026-03-07T12:00 (in the schedule's zone,"
            f" {zone.key}) or with an offset, like 2026-03-07T12:00-05:00 or 2026-03-07T17:00Z"
        ) from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=zone)


def option(name: str, parse: Callable[[str], T], text: str) -> T:
    """``parse(text)``, with the option's name put in front of any ``InvalidInput`` message."""
    try:
        return parse(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``, which every list and show command takes."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")

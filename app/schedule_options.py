"""A schedule's options, each declared once, on its field of :class:`app.schedule.Schedule` (pure).

``timeout: timedelta = option(timedelta(minutes=25), DURATION, "a run past it is timed_out", message="time_limit")``
says everything the rest of punchclock needs to know about an option; the rest is derived from it:

- the CLI flag of ``punchclock schedules add`` (``--timeout DUR``) and how its text is read (:func:`parse_cli`);
- the column it is stored in (the option's name; ``upsert_schedule.sql`` takes every option in one jsonb
  record, its column lists built from :data:`OPTIONS`) and how the value is read back (:func:`from_row`);
- the message option a run is published with, if any (``message``: Dramatiq's ``time_limit`` in ms);
- its key and value in the CLI's JSON output (:func:`to_json`).

A kind (:class:`Kind`) says how values of one type cross those boundaries: durations are parsed from ``90s``,
stored as intervals, published in milliseconds and shown in JSON as numbers under ``…_seconds`` keys. Adding
an option is one field declared with :func:`option` plus a migration adding its column; validation of its
value stays in ``Schedule.validated``.

The schedule's identity and what it runs (``name``, ``actor``, ``cron``, ``args``) and ``paused`` (a code sync
never unpauses what an operator paused) are plain fields, handled by name where they are special.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from app.durations import parse_duration
from app.errors import InvalidInput
from app.misfire import Misfire, parse_misfire

T = TypeVar("T")


class Values(Protocol):
    """Option values by name: a ``schedules`` row (asyncpg's Record) or a dict of a schedule's fields."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class Kind:
    """How values of one Python type cross each boundary: from CLI text, to a JSON record PostgreSQL's
    ``jsonb_populate_record`` reads into the column, from the row back, to the run's message, to JSON output."""

    name: str
    # what argparse is told besides the flag: a switch (store_true), a repeatable flag (append), an int
    argparse: Mapping[str, Any]
    from_cli: Callable[[str, Any], Any]
    to_db: Callable[[Any], Any] = lambda value: value
    from_db: Callable[[Any], Any] = lambda value: value
    to_message: Callable[[Any], Any] = lambda value: value
    to_json: Callable[[Any], Any] = lambda value: value
    # the option's key in JSON output: a number's key names its unit (``timeout_seconds``)
    json_key: Callable[[str], str] = lambda name: name


def _parsed(parse: Callable[[str], Any]) -> Callable[[str, Any], Any]:
    """Read the flag's text with ``parse``, naming the flag in front of its error."""

    def read(flag: str, text: str) -> Any:
        try:
            return parse(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{flag}: {exc}") from None

    return read


def _interval(value: timedelta) -> str:
    """Exact interval input text: days, seconds and microseconds as the timedelta holds them (a float of
    seconds would round)."""
    return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


TEXT = Kind("text", {}, lambda flag, text: text)
INT = Kind("int", {"type": int}, lambda flag, value: value)
SWITCH = Kind("switch", {"action": "store_true"}, lambda flag, value: bool(value))
DURATION = Kind(
    "duration",
    {},
    _parsed(parse_duration),
    to_db=_interval,
    to_message=_ms,
    to_json=lambda value: round(value.total_seconds(), 3),  # to the millisecond, as the CLI's JSON writes them
    json_key=lambda name: f"{name}_seconds",
)
NAMES = Kind(
    "names",
    {"action": "append"},
    lambda flag, values: tuple(values),
    to_db=list,
    from_db=tuple,
    to_json=list,
)
MISFIRE = Kind("misfire", {}, _parsed(parse_misfire), to_db=str, from_db=Misfire, to_json=str)


@dataclass(frozen=True)
class Option:
    """One option: its field's name and default, its kind, how the CLI offers it, the message option it is
    published as (None: it is not), and, when its JSON output is not its kind's, how it is shown."""

    name: str
    default: Any
    kind: Kind
    help: str | None
    metavar: str | None = None
    flag: str = ""
    message: str | None = None
    json: Callable[[Any], Any] | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def option(
    default: T,
    kind: Kind,
    help: str | None,
    *,
    metavar: str | None = None,
    flag: str = "",
    message: str | None = None,
    json: Callable[[Any], Any] | None = None,
) -> T:
    """A :class:`Schedule` field with default ``default`` declared as an option (see the module's docstring)."""
    spec = Option("", default, kind, help, metavar, flag, message, json)
    # A dataclasses.Field at run time, typed as its default: type checkers see a field with a default.
    return field(default=default, metadata={"option": spec})


def declared_options(cls: type) -> tuple[Option, ...]:
    """The options declared on dataclass ``cls``, in field order, each with its field's name."""
    found: list[Field[Any]] = [f for f in fields(cls) if "option" in f.metadata]
    return tuple(replace(f.metadata["option"], name=f.name) for f in found)


def parse_cli(options: tuple[Option, ...], namespace: Any) -> dict[str, Any]:
    """The values of the flags given on the command line, by option name (flags not given are left out, so
    the field keeps its default); :class:`app.errors.InvalidInput` naming the flag for a bad one."""
    values: dict[str, Any] = {}
    for spec in options:
        given = getattr(namespace, spec.name)
        if given is not None:
            values[spec.name] = spec.kind.from_cli(spec.cli_flag, given)
    return values


def to_db(options: tuple[Option, ...], values: Any) -> dict[str, Any]:
    """The options of ``values`` (a schedule) as one JSON record, by column name."""
    return {spec.name: spec.kind.to_db(getattr(values, spec.name)) for spec in options}


def from_row(options: tuple[Option, ...], row: Values) -> dict[str, Any]:
    """The options of a ``schedules`` row, as the schedule's fields."""
    return {spec.name: spec.kind.from_db(row[spec.name]) for spec in options}


def message_values(options: tuple[Option, ...], values: Values) -> dict[str, Any]:
    """The message options of a run from its schedule's option ``values`` (a row, or a schedule's fields)."""
    return {spec.message: spec.kind.to_message(values[spec.name]) for spec in options if spec.message is not None}


def to_json(options: tuple[Option, ...], values: Any) -> dict[str, Any]:
    """The options of ``values`` (a schedule) as the CLI's JSON output shows them."""
    return {
        spec.kind.json_key(spec.name): (spec.json or spec.kind.to_json)(getattr(values, spec.name)) for spec in options
    }

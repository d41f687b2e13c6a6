"""What the CLI prints: aligned tables for people, ``--json`` with stable keys for scripts.

Instants (:mod:`app.instants`): text shows them in the schedule's own zone with its offset
(``2026-03-08T03:00:00-04:00``), or in UTC as ``…Z`` when there is no zone to show them in; JSON always in UTC,
``…Z``, to the millisecond. Durations: text writes them as ``punchclock`` reads them (``90s``, ``1h30m``:
:func:`app.durations.format_duration`); JSON as numbers under keys that name the unit (``duration_seconds``,
``retry_delay_ms``), so scripts do arithmetic on them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tabulate import tabulate

from app.durations import format_duration
from app.instants import format_instant
from app.redaction import redact
from app.runs import Run
from app.schedule import OPTIONS
from app.schedule_options import to_json as schedule_options_json
from app.schedule_store import StoredSchedule

NONE = "-"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Columns of whole numbers right-aligned; every other cell printed as given (a name like ``1e5`` stays)."""
    table = [list(row) for row in rows]
    text_columns = [
        i
        for i in range(len(headers))
        if not all(isinstance(row[i], int) and not isinstance(row[i], bool) for row in table)
    ]
    print(tabulate(table, headers=list(headers), tablefmt="simple", disable_numparse=text_columns))


def print_fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """A key/value block, keys aligned, as in ``kubectl describe``."""
    rows = [(f"{key}:", NONE if value is None or value == "" else value) for key, value in pairs]
    print(tabulate(rows, tablefmt="plain", disable_numparse=True))


def warn(message: str) -> None:
    print(f"punchclock: warning: {redact(message)}", file=sys.stderr)


def local_time(moment: datetime | None, zone: ZoneInfo | None) -> str:
    """``moment`` in ``zone`` with its offset, to the second; in UTC (``Z``) when ``zone`` is None."""
    if moment is None:
        return NONE
    return format_instant(moment, zone or UTC)


def utc_time(moment: datetime | None) -> str:
    return NONE if moment is None else format_instant(moment)


def iso(moment: datetime | None) -> str | None:
    """An instant for JSON: UTC, ``Z``, to the millisecond."""
    return None if moment is None else format_instant(moment, milliseconds=True)


def iso_local(moment: datetime, zone: ZoneInfo) -> str:
    """An instant for JSON in a schedule's zone (where a script asks for local times): its offset, to the
    millisecond."""
    return format_instant(moment, zone, milliseconds=True)


def duration(value: timedelta | None) -> str | None:
    return None if value is None else format_duration(value)


def seconds(value: timedelta | None) -> float | None:
    """A duration for JSON, under a ``…_seconds`` key: seconds, to the millisecond."""
    return None if value is None else round(value.total_seconds(), 3)


# Dramatiq's options that hold a duration, in milliseconds (a run's options are its message's).
_MS_OPTIONS = frozenset({"min_backoff", "max_backoff", "time_limit"})


def options_text(options: dict[str, Any]) -> str:
    """A run's message options for people: ``key=value`` by key, durations as ``10s``, unset ones left out."""
    shown = []
    for key, value in sorted(options.items()):
        if value is None:
            continue
        if key in _MS_OPTIONS and isinstance(value, int) and not isinstance(value, bool):
            text = format_duration(timedelta(milliseconds=value))
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown.append(f"{key}={text}")
    return ", ".join(shown)


def options_json(options: dict[str, Any]) -> dict[str, Any]:
    """A run's message options for scripts: Dramatiq's duration options under ``…_ms`` keys."""
    return {f"{key}_ms" if key in _MS_OPTIONS else key: value for key, value in options.items()}


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def status(stored: StoredSchedule) -> str:
    if stored.orphaned:
        return "orphaned"
    return "paused" if stored.schedule.paused else "active"


def schedule_json(stored: StoredSchedule) -> dict[str, Any]:
    s = stored.schedule
    return {
        "name": s.name,
        "actor": s.actor,
        "args": dict(s.args),
        "cron": s.cron,
        "status": status(stored),
        "paused": s.paused,
        "orphaned": stored.orphaned,
        "source": stored.source,
        **schedule_options_json(OPTIONS, s),  # every option, as app/schedule.py declares it
        "next_fire_at": None if s.paused else iso(stored.next_fire_at),
        "last_state": stored.last_state,
        "created_at": iso(stored.created_at),
        "updated_at": iso(stored.updated_at),
    }


def run_duration(run: Run) -> timedelta | None:
    """How long the run ran: first start to finish."""
    if run.started_at is None or run.finished_at is None:
        return None
    return run.finished_at - run.started_at


def start_delay(run: Run) -> timedelta | None:
    """How late the run started after the instant it was scheduled for."""
    return None if run.started_at is None else run.started_at - run.scheduled_for


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule": run.schedule_name,
        "schedule_id": run.schedule_id,
        "actor": run.actor,
        "trigger": run.trigger,
        "state": str(run.state),
        "attempts": run.attempts,
        "args": run.args,
        "options": options_json(run.options),
        "scheduled_for": iso(run.scheduled_for),
        "created_at": iso(run.created_at),
        "enqueued_at": iso(run.enqueued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": seconds(run_duration(run)),
        "start_delay_seconds": seconds(start_delay(run)),
        "error": run.error,
        "output": run.output,
        "trace_id": run.trace_id,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "blocked_by": run.blocked_by,
        "delay_ms": run.delay_ms,
        "next_attempt_at": iso(run.next_attempt_at),
        "cancel_requested": run.cancel_requested,
    }


def one_line(text: str | None, width: int = 60) -> str:
    """The first line of ``text``, cut to ``width`` characters, for a table cell."""
    if not text:
        return NONE
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"

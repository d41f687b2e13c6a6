"""``punchclock runs list``, ``runs show RUN_ID``: the run history, newest first; ``runs cancel``, ``runs retry``.

Times are shown in the zone of the run's schedule; a run whose schedule was deleted is shown in UTC.
"""

from __future__ import annotations

import argparse
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app.cli import output
from app.cli.database import Database, run_with_database
from app.cli.trigger import record_and_publish, report
from app.cron import validate_timezone
from app.errors import InvalidInput, NotFound
from app.runs import (
    Run,
    RunAttempt,
    RunNotification,
    RunState,
    cancel_run,
    get_run,
    list_attempts,
    list_notifications,
    list_runs,
    parse_state,
    retry_run,
)
from app.schedule_store import get_schedule
from app.settings import Settings
from app.tracing import jaeger_link

DEFAULT_LIMIT = 20
# More rows than a terminal or a script reads at once; --schedule and --state narrow a search instead.
MAX_LIMIT = 100_000
# Run ids are PostgreSQL bigints from 1 up: no run has an id outside this range, and asyncpg refuses to send one.
MAX_RUN_ID = 2**63 - 1

Zones = dict[str, ZoneInfo]


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--schedule", metavar="NAME", help="only this schedule's runs")
    listing.add_argument("--state", metavar="S", help="only runs in this state, e.g. failed")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"1-{MAX_LIMIT}, default {DEFAULT_LIMIT}"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_command)

    show = commands.add_parser("show", help="every field of one run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=show_command)

    cancel = commands.add_parser("cancel", help="stop a run: one not started never starts, a running one is stopped")
    cancel.add_argument("run_id", type=int, metavar="RUN_ID")
    cancel.set_defaults(handler=cancel_command)

    retry = commands.add_parser("retry", help="a new manual run with the same schedule, actor, args and options")
    retry.add_argument("run_id", type=int, metavar="RUN_ID")
    retry.set_defaults(handler=retry_command)


async def _zones(conn: asyncpg.Connection[Any], runs: list[Run]) -> Zones:
    """The time zone of each run's schedule, by schedule name, for the schedules that still exist."""
    zones: Zones = {}
    for name in {run.schedule_name for run in runs if run.schedule_id is not None and run.schedule_name}:
        with suppress(NotFound):  # deleted since the query
            zones[name] = validate_timezone((await get_schedule(conn, name)).schedule.timezone)
    return zones


def _zone(run: Run, zones: Zones) -> ZoneInfo | None:
    return zones.get(run.schedule_name) if run.schedule_id is not None and run.schedule_name else None


def known_run_id(run_id: int) -> int:
    """``run_id``, or :class:`NotFound` without asking the database when no run can have it."""
    if not 1 <= run_id <= MAX_RUN_ID:
        raise NotFound(f"no run with id {run_id}: see punchclock runs list")
    return run_id


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise InvalidInput(
            f"invalid --limit {args.limit}: must be 1-{MAX_LIMIT}; narrow the list with --schedule or --state"
        )
    state = None if args.state is None else parse_state(args.state)

    async def fetch(db: Database) -> tuple[list[Run], Zones]:
        runs = await list_runs(db.conn, schedule=args.schedule, state=state, limit=args.limit)
        return runs, await _zones(db.conn, runs)

    runs, zones = run_with_database(settings, fetch)
    if args.json:
        output.print_json([output.run_json(run) for run in runs])
        return 0
    if not runs:
        print("no runs" + (" match" if args.schedule or state else " yet"))
        return 0
    output.print_table(
        (
            (
                run.id,
                run.schedule_name or output.NONE,
                run.actor,
                run.trigger,
                run.state,
                output.local_time(run.scheduled_for, _zone(run, zones)),
                output.duration(output.run_duration(run)) or output.NONE,
                run.attempts,
                output.one_line(run.error, 40),
            )
            for run in runs
        ),
        ("ID", "SCHEDULE", "ACTOR", "TRIGGER", "STATE", "SCHEDULED FOR", "DURATION", "ATTEMPTS", "ERROR"),
    )
    return 0


@dataclass(frozen=True)
class RunDetail:
    run: Run
    attempts: list[RunAttempt]
    notifications: list[RunNotification]
    zone: ZoneInfo | None


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    known_run_id(args.run_id)

    async def fetch(db: Database) -> RunDetail:
        run = await get_run(db.conn, args.run_id)
        return RunDetail(
            run,
            await list_attempts(db.conn, run.id),
            await list_notifications(db.conn, run.id),
            _zone(run, await _zones(db.conn, [run])),
        )

    detail = run_with_database(settings, fetch)
    run, zone = detail.run, detail.zone
    if args.json:
        output.print_json(
            {
                **output.run_json(run),
                "attempt_history": [_attempt_json(a) for a in detail.attempts],
                "notifications": [_notification_json(n) for n in detail.notifications],
                "trace_url": jaeger_link(settings, run.trace_id) if run.trace_id else None,
            }
        )
        return 0
    output.print_fields(
        (
            ("id", run.id),
            ("schedule", _schedule_label(run)),
            ("actor", run.actor),
            ("trigger", run.trigger),
            ("state", run.state),
            ("attempts", run.attempts),
            ("args", output.json_text(run.args)),
            ("options", output.json_text(run.options)),
            ("scheduled for", output.local_time(run.scheduled_for, zone)),
            ("created", output.local_time(run.created_at, zone)),
            ("enqueued", output.local_time(run.enqueued_at, zone)),
            ("started", output.local_time(run.started_at, zone)),
            ("finished", output.local_time(run.finished_at, zone)),
            ("start delay", output.duration(output.start_delay(run))),
            ("duration", output.duration(output.run_duration(run))),
            ("blocked by", None if run.blocked_by is None else f"run {run.blocked_by}"),
            ("next attempt", output.local_time(run.next_attempt_at, zone)),
            ("cancel", "requested" if run.cancel_requested and run.state is RunState.RUNNING else None),
            ("trace id", run.trace_id),
            ("trace", jaeger_link(settings, run.trace_id) if run.trace_id else None),
            (
                "tokens",
                f"{run.input_tokens} in, {run.output_tokens} out" if run.input_tokens or run.output_tokens else None,
            ),
            ("output", None if run.output is None else output.json_text(run.output)),
        )
    )
    if run.error:
        print()
        print("Error")
        print(run.error)
    if detail.attempts:
        print()
        print("Attempts")
        output.print_table(
            (
                (
                    a.attempt,
                    a.state,
                    output.local_time(a.started_at, zone),
                    output.duration(None if a.finished_at is None else a.finished_at - a.started_at) or output.NONE,
                    output.one_line(a.error, 40),
                    output.duration(None if a.retry_delay_ms is None else timedelta(milliseconds=a.retry_delay_ms))
                    or output.NONE,
                )
                for a in detail.attempts
            ),
            ("#", "STATE", "STARTED", "DURATION", "ERROR", "RETRY DELAY"),
        )
    if detail.notifications:
        print()
        print("Notifications")
        output.print_table(
            ((n.target, n.event, n.state, n.attempts, output.one_line(n.error, 40)) for n in detail.notifications),
            ("TARGET", "EVENT", "STATE", "ATTEMPTS", "ERROR"),
        )
    return 0


def _attempt_json(attempt: RunAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "state": attempt.state,
        "started_at": output.iso(attempt.started_at),
        "finished_at": output.iso(attempt.finished_at),
        "duration_seconds": attempt.duration_seconds,
        "error": attempt.error,
        "retry_delay_ms": attempt.retry_delay_ms,
    }


def _notification_json(notification: RunNotification) -> dict[str, Any]:
    return {
        "target": notification.target,
        "event": notification.event,
        "state": notification.state,
        "attempts": notification.attempts,
        "error": notification.error,
        "created_at": output.iso(notification.created_at),
        "sent_at": output.iso(notification.sent_at),
    }


# cancel / retry -------------------------------------------------------------------------------------------


def cancel_command(args: argparse.Namespace, settings: Settings) -> int:
    known_run_id(args.run_id)

    async def cancel(db: Database) -> Run:
        return await cancel_run(db.conn, args.run_id)

    run = run_with_database(settings, cancel)
    label = f"run {run.id}" + (f' of "{run.schedule_name}"' if run.schedule_name else "")
    if run.state is RunState.RUNNING:
        print(f"asked {label} to stop: its worker stops it and marks it cancelled within a heartbeat")
    else:
        print(f"cancelled {label}: it will not start")
    return 0


def retry_command(args: argparse.Namespace, settings: Settings) -> int:
    known_run_id(args.run_id)

    async def record(db: Database) -> list[int]:
        return [(await retry_run(db.conn, args.run_id)).id]

    recorded = record_and_publish(settings, record)
    (run,) = recorded.runs
    of = f' of "{run.schedule_name}"' if run.schedule_name else ""
    report(
        recorded,
        settings,
        recorded=f"run {run.id}{of} recorded (manual retry of run {args.run_id}, {run.actor})",
        done=f"run {run.id}{of} {run.state} (manual retry of run {args.run_id}, {run.actor})",
    )
    return 0


def _schedule_label(run: Run) -> str | None:
    if run.schedule_name is not None and run.schedule_id is None:
        return f"{run.schedule_name} (deleted)"
    return run.schedule_name

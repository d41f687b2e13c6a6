"""``punchclock runs list`` and ``runs show RUN_ID``: the run history, newest first.

Times are shown in the zone of the run's schedule; a run whose schedule was deleted is shown in UTC.
"""

from __future__ import annotations

import argparse
from contextlib import suppress
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app.cli import output
from app.cli.database import Database, run_with_database
from app.cron import validate_timezone
from app.errors import NotFound
from app.runs import Run, get_run, list_runs, parse_state
from app.schedule_store import get_schedule
from app.settings import Settings

DEFAULT_LIMIT = 20

Zones = dict[str, ZoneInfo]


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--schedule", metavar="NAME", help="only this schedule's runs")
    listing.add_argument("--state", metavar="S", help="only runs in this state, e.g. failed")
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"default {DEFAULT_LIMIT}")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_command)

    show = commands.add_parser("show", help="every field of one run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=show_command)


async def _zones(conn: asyncpg.Connection[Any], runs: list[Run]) -> Zones:
    """The time zone of each run's schedule, by schedule name, for the schedules that still exist."""
    zones: Zones = {}
    for name in {run.schedule_name for run in runs if run.schedule_id is not None and run.schedule_name}:
        with suppress(NotFound):  # deleted since the query
            zones[name] = validate_timezone((await get_schedule(conn, name)).schedule.timezone)
    return zones


def _zone(run: Run, zones: Zones) -> ZoneInfo | None:
    return zones.get(run.schedule_name) if run.schedule_id is not None and run.schedule_name else None


def list_command(args: argparse.Namespace, settings: Settings) -> int:
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


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> tuple[Run, Zones]:
        run = await get_run(db.conn, args.run_id)
        return run, await _zones(db.conn, [run])

    run, zones = run_with_database(settings, fetch)
    if args.json:
        output.print_json(output.run_json(run))
        return 0
    zone = _zone(run, zones)
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
            ("trace id", run.trace_id),
            ("output", None if run.output is None else output.json_text(run.output)),
        )
    )
    if run.error:
        print()
        print("Error")
        print(run.error)
    return 0


def _schedule_label(run: Run) -> str | None:
    if run.schedule_name is not None and run.schedule_id is None:
        return f"{run.schedule_name} (deleted)"
    return run.schedule_name

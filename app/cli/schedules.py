"""``punchclock schedules …``: add, list, show, next, pause, resume, delete, sync (and trigger, in trigger.py).

Schedules added here live only in the database (``source`` = ``cli``); those of ``schedules.py`` are synced
from code. Every value is validated before the database is touched, so a rejected ``add`` writes nothing.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from app.ai.config import LLMConfig
from app.cli import backfill, confirm, output, trigger
from app.cli.arguments import instant, json_flag, json_object
from app.cli.database import Database, run_with_database
from app.cli.deployment import code_kbs, code_schedules, registered_actors
from app.cli.runs import cancelled_text, pending_text
from app.cron import next_fires, validate_timezone
from app.errors import InvalidInput
from app.kb.registry import sync_code_kbs
from app.notify.targets import parse_target
from app.runs import Pending, Run, cancel_schedule_runs, count_pending, list_runs
from app.schedule import OPTIONS, Schedule
from app.schedule_options import parse_cli
from app.schedule_store import (
    StoredSchedule,
    add_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    set_paused,
    sync_code_schedules,
)
from app.settings import Settings

SHOW_FIRES = 5
SHOW_RUNS = 5
MAX_NEXT = 1000


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="schedules_command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="create a schedule (stored in the database)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--actor", required=True, help="the actor to run, e.g. probe")
    add.add_argument(
        "--cron", metavar="EXPR", help='5 fields or an alias, e.g. "30 2 * * *", @daily (optional with --after)'
    )
    add.add_argument("--args", metavar="JSON", help="keyword arguments of the actor, a JSON object")
    add.add_argument("--paused", action="store_true", help="create it paused")
    for spec in OPTIONS:  # one flag per option, as app/schedule.py declares it
        shown: dict[str, Any] = {"metavar": spec.metavar} if spec.metavar else {}  # a switch takes no value
        add.add_argument(spec.cli_flag, dest=spec.name, help=spec.help, **shown, **spec.kind.argparse)
    add.set_defaults(handler=add_command)

    listing = commands.add_parser("list", help="every schedule, its next fire and its last run")
    json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = commands.add_parser("show", help="every field of a schedule, its next fires and last runs")
    show.add_argument("name", metavar="NAME")
    json_flag(show)
    show.set_defaults(handler=show_command)

    upcoming = commands.add_parser("next", help="the next fire times of a schedule")
    upcoming.add_argument("name", metavar="NAME")
    upcoming.add_argument("-n", type=int, default=SHOW_FIRES, metavar="N", help=f"how many (default {SHOW_FIRES})")
    upcoming.add_argument("--after", metavar="T", help="ISO 8601 date-time, naive = the schedule's zone (default now)")
    json_flag(upcoming)
    upcoming.set_defaults(handler=next_command)

    for name, paused, text in (
        ("pause", True, "stop firing until resumed"),
        ("resume", False, "fire again, from the next instant after now"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("name", metavar="NAME")
        if paused:
            _cancel_pending_flag(command)
        command.set_defaults(handler=pause_command, paused=paused, cancel_pending=False)

    delete = commands.add_parser("delete", help="delete a schedule; its runs keep their history")
    delete.add_argument("name", metavar="NAME")
    _cancel_pending_flag(delete)
    delete.set_defaults(handler=delete_command)

    sync = commands.add_parser("sync", help="sync the schedules declared in code (schedules.py) now")
    sync.set_defaults(handler=sync_command)

    trigger.register(commands.add_parser("trigger", help="run a schedule now (a manual run)"))
    backfill.register(commands.add_parser("backfill", help="one run per cron instant of a range (e.g. the past)"))


def _cancel_pending_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cancel-pending",
        action="store_true",
        help="also cancel its runs not over yet (without it: asked on a terminal, else they still run)",
    )


# add ------------------------------------------------------------------------------------------------------


def add_command(args: argparse.Namespace, settings: Settings) -> int:
    fields: dict[str, Any] = {"paused": args.paused, **parse_cli(OPTIONS, args)}
    if args.args is not None:
        fields["args"] = json_object("--args", args.args)
    schedule = Schedule(name=args.name, actor=args.actor, cron=args.cron, **fields).validated(
        registered_actors(), allow_link_local=settings.notify_allow_link_local
    )

    async def add(db: Database) -> StoredSchedule:
        return await add_schedule(db.conn, schedule, now=await db.now())

    stored = run_with_database(settings, add)
    s = stored.schedule
    print(f'created schedule "{s.name}": {s.actor} {_when(s)}')
    if s.paused:
        print(f"paused: it fires once resumed (punchclock schedules resume {s.name})")
    elif s.cron is not None:
        print(f"next fire: {_both(stored)}")
    return 0


def _when(s: Schedule) -> str:
    """``at "30 2 * * *" (UTC)``, ``after a, b``, or both."""
    parts = [] if s.cron is None else [f'at "{s.cron}" ({s.timezone})']
    if s.after:
        parts.append(f"after {', '.join(s.after)} succeed" + ("s" if len(s.after) == 1 else ""))
    return " and ".join(parts)


def _both(stored: StoredSchedule) -> str:
    """The stored next fire in the schedule's zone, and in UTC."""
    if stored.next_fire_at is None:
        return output.NONE
    zone = validate_timezone(stored.schedule.timezone)
    return f"{output.local_time(stored.next_fire_at, zone)} ({output.utc_time(stored.next_fire_at)})"


# list / show / next ---------------------------------------------------------------------------------------


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> list[StoredSchedule]:
        return await list_schedules(db.conn)

    schedules = run_with_database(settings, fetch)
    if args.json:
        output.print_json([output.schedule_json(stored) for stored in schedules])
        return 0
    if not schedules:
        print("no schedules: add one with punchclock schedules add, or declare it in schedules.py")
        return 0
    output.print_table(
        (
            (
                stored.schedule.name,
                stored.schedule.actor,
                stored.schedule.cron or f"after {','.join(stored.schedule.after)}",
                stored.schedule.timezone,
                output.status(stored),
                stored.source,
                output.NONE
                if stored.schedule.paused
                else output.local_time(stored.next_fire_at, validate_timezone(stored.schedule.timezone)),
                stored.last_state or output.NONE,
            )
            for stored in schedules
        ),
        ("NAME", "ACTOR", "CRON", "TIMEZONE", "STATUS", "SOURCE", "NEXT FIRE (schedule's zone)", "LAST RUN"),
    )
    return 0


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> tuple[StoredSchedule, list[Run], list[datetime]]:
        stored = await get_schedule(db.conn, args.name)
        runs = await list_runs(db.conn, schedule=args.name, state=None, limit=SHOW_RUNS)
        s = stored.schedule
        fires = [] if s.cron is None else next_fires(s.cron, s.timezone, await db.now(), SHOW_FIRES)
        return stored, runs, fires

    stored, runs, fires = run_with_database(settings, fetch)
    s = stored.schedule
    zone = validate_timezone(s.timezone)
    if args.json:
        output.print_json(
            {
                **output.schedule_json(stored),
                "next_fires": [output.iso(t) for t in fires],
                "runs": [output.run_json(run) for run in runs],
            }
        )
        return 0
    output.print_fields(
        (
            ("name", s.name),
            ("description", s.description),
            ("actor", s.actor),
            ("args", output.json_text(dict(s.args))),
            ("cron", s.cron),
            ("timezone", s.timezone),
            ("status", output.status(stored)),
            ("source", stored.source),
            ("next fire", output.NONE if s.paused else _both(stored)),
            ("misfire", f"{s.misfire} (catch-up window {output.duration(s.catchup_window)})"),
            ("overlap", s.overlap),
            ("lock key", s.lock_key),
            ("max retries", s.max_retries),
            ("backoff", f"{output.duration(s.min_backoff)} to {output.duration(s.max_backoff)}"),
            ("timeout", f"{output.duration(s.timeout)} ({'retried' if s.retry_timeouts else 'not retried'})"),
            ("jitter", output.duration(s.jitter)),
            (
                "notify",
                # stored entries are shown as they are, whatever the link-local policy that let them in
                ", ".join(parse_target(e, allow_link_local=True).masked for e in s.notify)
                + (" (and on recovery)" if s.notify and s.notify_on_recovery else ""),
            ),
            ("after", ", ".join(s.after)),
            ("created", output.local_time(stored.created_at, zone)),
            ("updated", output.local_time(stored.updated_at, zone)),
        )
    )
    print()
    print(f"Next {len(fires)} fires" + (" (if resumed)" if s.paused else ""))
    _print_fires(fires, s.timezone)
    print()
    print(f"Last {SHOW_RUNS} runs")
    if runs:
        output.print_table(
            (
                (
                    run.id,
                    run.trigger,
                    run.state,
                    output.local_time(run.scheduled_for, zone),
                    output.duration(output.run_duration(run)) or output.NONE,
                    run.attempts,
                    output.one_line(run.error, 40),
                )
                for run in runs
            ),
            ("ID", "TRIGGER", "STATE", "SCHEDULED FOR", "DURATION", "ATTEMPTS", "ERROR"),
        )
    else:
        print(f"no runs yet (run one now: punchclock schedules trigger {s.name})")
    return 0


def next_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.n <= MAX_NEXT:
        raise InvalidInput(f"invalid -n {args.n}: must be 1-{MAX_NEXT}")

    async def fetch(db: Database) -> tuple[StoredSchedule, datetime, list[datetime]]:
        stored = await get_schedule(db.conn, args.name)
        s = stored.schedule
        if s.cron is None:
            raise InvalidInput(f'schedule "{s.name}" has no cron: it runs after {", ".join(s.after)}')
        zone = validate_timezone(s.timezone)
        after = await db.now() if args.after is None else instant("--after", args.after, zone)
        return stored, after, next_fires(s.cron, s.timezone, after, args.n)

    stored, after, fires = run_with_database(settings, fetch)
    s = stored.schedule
    zone = validate_timezone(s.timezone)
    if args.json:
        output.print_json(
            {
                "schedule": s.name,
                "cron": s.cron,
                "timezone": s.timezone,
                "after": output.iso_local(after, zone),
                "fires": [{"local": output.iso_local(t, zone), "utc": output.iso(t)} for t in fires],
            }
        )
        return 0
    heading = f'next {len(fires)} fires of "{s.name}" ({s.cron}, {s.timezone}) after {output.local_time(after, zone)}'
    print(heading + (" (paused: these fire only if resumed)" if s.paused else ""))
    _print_fires(fires, s.timezone)
    return 0


def _print_fires(fires: list[datetime], timezone: str) -> None:
    zone = validate_timezone(timezone)
    output.print_table(
        (
            (number, output.local_time(t, zone), t.astimezone(zone).tzname(), output.utc_time(t))
            for number, t in enumerate(fires, start=1)
        ),
        ("#", timezone, "ABBREVIATION", "UTC"),
    )


# pause / resume / delete / sync ---------------------------------------------------------------------------


def pause_command(args: argparse.Namespace, settings: Settings) -> int:
    pending, cancel = _pending(args, settings) if args.paused else (Pending(), False)

    async def change(db: Database) -> tuple[StoredSchedule, Pending | None]:
        async with db.conn.transaction():
            stored = await set_paused(db.conn, args.name, args.paused, now=await db.now())
            return stored, await cancel_schedule_runs(db.conn, args.name) if cancel else None

    stored, cancelled = run_with_database(settings, change)
    if args.paused:
        print(f'paused schedule "{args.name}" (resume with punchclock schedules resume {args.name})')
        _report_pending(args.name, pending, cancelled, "pausing stops new runs only")
    else:
        print(f'resumed schedule "{args.name}": next fire {_both(stored)}')
    return 0


def delete_command(args: argparse.Namespace, settings: Settings) -> int:
    pending, cancel = _pending(args, settings)

    async def delete(db: Database) -> Pending | None:
        async with db.conn.transaction():
            await delete_schedule(db.conn, args.name)
            return await cancel_schedule_runs(db.conn, args.name) if cancel else None

    cancelled = run_with_database(settings, delete)
    print(f'deleted schedule "{args.name}"; its runs keep their history (punchclock runs list --schedule {args.name})')
    _report_pending(args.name, pending, cancelled, "deleting a schedule stops new runs only")
    return 0


def _pending(args: argparse.Namespace, settings: Settings) -> tuple[Pending, bool]:
    """The schedule's runs not over yet, and whether to cancel them: ``--cancel-pending``, else the answer of a
    person on the terminal; never asked of a script (its pending runs still run, and it is told so)."""

    async def count(db: Database) -> Pending:
        await get_schedule(db.conn, args.name)  # no such schedule: say so before asking anything
        return await count_pending(db.conn, args.name)

    pending = run_with_database(settings, count)
    if args.cancel_pending or not pending.total or not confirm.interactive():
        return pending, args.cancel_pending
    return pending, confirm.ask(f'schedule "{args.name}" has {pending_text(pending)}: cancel them?')


def _report_pending(name: str, pending: Pending, cancelled: Pending | None, why: str) -> None:
    if cancelled is not None:
        print(cancelled_text(cancelled, name))
    elif pending.total:
        print(
            f"its {pending_text(pending)} still run ({why}); cancel them with punchclock runs cancel --schedule {name}"
        )


def sync_command(args: argparse.Namespace, settings: Settings) -> int:
    schedules, known, kbs = code_schedules(settings), registered_actors(), code_kbs(settings)
    llm_config = LLMConfig.from_settings(settings)

    async def sync(db: Database) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
        synced = await sync_code_schedules(
            db.conn, schedules, known, now=await db.now(), allow_link_local=settings.notify_allow_link_local
        )
        return synced, await sync_code_kbs(db.conn, kbs, llm_config)

    (synced, orphaned), (kbs_synced, kbs_orphaned) = run_with_database(settings, sync)
    source = settings.schedules_module or "no module (PUNCHCLOCK_SCHEDULES_MODULE is empty)"
    print(f"synced {len(synced)} schedule(s) from {source}" + (f": {', '.join(synced)}" if synced else ""))
    if orphaned:
        print(f"orphaned (no longer in code: paused, history kept): {', '.join(orphaned)}")
    if kbs_synced or kbs_orphaned:
        print(f"synced {len(kbs_synced)} knowledge base(s)" + (f": {', '.join(kbs_synced)}" if kbs_synced else ""))
    if kbs_orphaned:
        print(f"orphaned knowledge bases (no longer in code: kept, still searchable): {', '.join(kbs_orphaned)}")
    return 0

"""``punchclock runs list``, ``runs show RUN_ID``: the run history, newest first; ``runs cancel``, ``runs retry``;
``runs prune``: delete finished runs past the retention (app/retention.py).

Times are shown in the zone of the run's schedule; a run whose schedule was deleted is shown in UTC.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app import retention
from app.cli import confirm, output
from app.cli.arguments import json_flag, option
from app.cli.database import Database, run_with_database
from app.cli.trigger import record_and_publish, report
from app.cron import validate_timezone
from app.durations import format_duration, parse_duration
from app.errors import InvalidInput, NotFound
from app.runs import (
    CANCELLABLE,
    Pending,
    Run,
    RunAttempt,
    RunNotification,
    RunState,
    RunStep,
    cancel_run,
    cancel_schedule_runs,
    cancellable_states,
    count_pending,
    get_run,
    list_attempts,
    list_notifications,
    list_runs,
    list_steps,
    parse_state,
    retry_run,
    schedule_known,
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

logger = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--schedule", metavar="NAME", help="only this schedule's runs")
    listing.add_argument("--state", metavar="S", help="only runs in this state, e.g. failed")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"1-{MAX_LIMIT}, default {DEFAULT_LIMIT}"
    )
    json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = commands.add_parser("show", help="every field of one run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    json_flag(show)
    show.set_defaults(handler=show_command)

    cancel = commands.add_parser(
        "cancel",
        help="stop a run, or a schedule's pending runs (--schedule): one not started never starts, a running one"
        " is stopped",
    )
    cancel.add_argument("run_id", type=int, nargs="?", metavar="RUN_ID", help="the run to cancel (or --schedule)")
    cancel.add_argument("--schedule", metavar="NAME", help="every pending run of this schedule (a deleted one's too)")
    cancel.add_argument(
        "--state",
        action="extend",
        nargs="+",
        metavar="STATE",
        help=f"with --schedule: only runs in these states (default all of {', '.join(CANCELLABLE)})",
    )
    cancel.add_argument("--yes", action="store_true", help="with --schedule: cancel without asking")
    cancel.set_defaults(handler=cancel_command)

    retry = commands.add_parser("retry", help="a new manual run with the same schedule, actor, args and options")
    retry.add_argument("run_id", type=int, metavar="RUN_ID")
    retry.set_defaults(handler=retry_command)

    prune = commands.add_parser(
        "prune", help="delete finished runs older than the retention, with their attempts, steps and notifications"
    )
    prune.add_argument(
        "--older-than",
        metavar="DUR",
        help="runs that finished longer ago than this (default: PUNCHCLOCK_RUN_RETENTION, 90d)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count the runs that would go; delete nothing")
    prune.add_argument(
        "--batch",
        type=int,
        default=retention.DEFAULT_BATCH,
        metavar="N",
        help=f"runs per transaction, 1-{retention.MAX_BATCH} (default {retention.DEFAULT_BATCH})",
    )
    prune.set_defaults(handler=prune_command)


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


async def fetch_listing(
    conn: asyncpg.Connection[Any], *, schedule: str | None, state: RunState | None, limit: int
) -> tuple[list[Run], Zones]:
    """What ``runs list`` reads: the runs, newest first, and the zones of their schedules."""
    runs = await list_runs(conn, schedule=schedule, state=state, limit=limit)
    return runs, await _zones(conn, runs)


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise InvalidInput(
            f"invalid --limit {args.limit}: must be 1-{MAX_LIMIT}; narrow the list with --schedule or --state"
        )
    state = None if args.state is None else parse_state(args.state)

    async def fetch(db: Database) -> tuple[list[Run], Zones]:
        return await fetch_listing(db.conn, schedule=args.schedule, state=state, limit=args.limit)

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
    steps: list[RunStep]
    notifications: list[RunNotification]
    zone: ZoneInfo | None


async def fetch_detail(conn: asyncpg.Connection[Any], run_id: int) -> RunDetail:
    """What ``runs show`` reads: the run, its attempts, steps and notifications, its schedule's zone."""
    run = await get_run(conn, run_id)
    return RunDetail(
        run,
        await list_attempts(conn, run.id),
        await list_steps(conn, run.id),
        await list_notifications(conn, run.id),
        _zone(run, await _zones(conn, [run])),
    )


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    known_run_id(args.run_id)

    async def fetch(db: Database) -> RunDetail:
        return await fetch_detail(db.conn, args.run_id)

    detail = run_with_database(settings, fetch)
    run, zone = detail.run, detail.zone
    if args.json:
        output.print_json(
            {
                **output.run_json(run),
                "attempt_history": [_attempt_json(a) for a in detail.attempts],
                "steps": [_step_json(step) for step in detail.steps],
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
            ("options", output.options_text(run.options)),
            ("scheduled for", output.local_time(run.scheduled_for, zone)),
            ("created", output.local_time(run.created_at, zone)),
            ("enqueued", output.local_time(run.enqueued_at, zone)),
            ("started", output.local_time(run.started_at, zone)),
            ("finished", output.local_time(run.finished_at, zone)),
            ("start delay", output.duration(output.start_delay(run))),
            ("duration", output.duration(output.run_duration(run))),
            ("blocked by", None if run.blocked_by is None else f"run {run.blocked_by}"),
            ("next attempt", output.local_time(run.next_attempt_at, zone)),
            *_cancel_field(run),
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
                    output.duration(a.duration) or output.NONE,
                    output.one_line(a.error, 40),
                    output.duration(None if a.retry_delay_ms is None else timedelta(milliseconds=a.retry_delay_ms))
                    or output.NONE,
                )
                for a in detail.attempts
            ),
            ("#", "STATE", "STARTED", "DURATION", "ERROR", "RETRY DELAY"),
        )
    if detail.steps:
        print()
        print("Steps")
        output.print_table(
            (
                (
                    step.attempt,
                    step.name,
                    step.status,
                    output.duration(step.duration),
                    f"{step.input_tokens} in, {step.output_tokens} out",
                    output.one_line(step.error, 40),
                )
                for step in detail.steps
            ),
            ("ATTEMPT", "STEP", "STATUS", "DURATION", "TOKENS", "ERROR"),
        )
    if detail.notifications:
        print()
        print("Notifications")
        output.print_table(
            ((n.target, n.event, n.state, n.attempts, output.one_line(n.error, 40)) for n in detail.notifications),
            ("TARGET", "EVENT", "STATE", "ATTEMPTS", "ERROR"),
        )
    return 0


def _cancel_field(run: Run) -> list[tuple[str, str]]:
    """A cancel asked of a running run that has not stopped yet; nothing otherwise (a cancelled run's state and
    error say it all)."""
    if run.cancel_requested and run.state is RunState.RUNNING:
        return [("cancel", "requested: its worker stops it within a heartbeat")]
    return []


def _step_json(step: RunStep) -> dict[str, Any]:
    return {
        "attempt": step.attempt,
        "seq": step.seq,
        "name": step.name,
        "status": step.status,
        "started_at": output.iso(step.started_at),
        "finished_at": output.iso(step.finished_at),
        "duration_seconds": output.seconds(step.duration),
        "input_tokens": step.input_tokens,
        "output_tokens": step.output_tokens,
        "error": step.error,
    }


def _attempt_json(attempt: RunAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "state": attempt.state,
        "started_at": output.iso(attempt.started_at),
        "finished_at": output.iso(attempt.finished_at),
        "duration_seconds": output.seconds(attempt.duration),
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
    if args.schedule is not None:
        if args.run_id is not None:
            raise InvalidInput(f"pass RUN_ID {args.run_id} or --schedule {args.schedule}, not both")
        return _cancel_schedule_runs(args, settings)
    if args.run_id is None:
        raise InvalidInput("pass the RUN_ID of the run to cancel, or --schedule NAME to cancel its pending runs")
    if args.state or args.yes:
        raise InvalidInput(f"--state and --yes go with --schedule NAME, not with RUN_ID {args.run_id}")
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


def _cancel_schedule_runs(args: argparse.Namespace, settings: Settings) -> int:
    """Count, confirm (``--yes``, or a yes on the terminal), cancel: two sessions, so no transaction stays open
    while a person reads the question; runs that started or ended meanwhile are counted as they are by then."""
    name, states = args.schedule, cancellable_states(args.state)
    if not args.yes and not confirm.interactive():
        # refused before anything is read: a script without --yes is a mistake whatever the count
        raise InvalidInput(
            f"runs cancel --schedule {name} cancels runs in bulk: pass --yes to confirm (stdin is not a terminal to"
            " ask on)"
        )

    async def count(db: Database) -> Pending:
        pending = await count_pending(db.conn, name, states)
        if not pending.total and not await schedule_known(db.conn, name):
            raise NotFound(f'no schedule named "{name}" and no runs of one: see punchclock schedules list')
        return pending

    pending = run_with_database(settings, count)
    what = f'"{name}" ({", ".join(states)})'
    if not pending.total:
        print(f"no runs of {what} to cancel")
        return 0
    if not args.yes and not confirm.ask(f"cancel {pending_text(pending)} of {what}?"):
        print("nothing cancelled")
        return 0

    async def cancel(db: Database) -> Pending:
        return await cancel_schedule_runs(db.conn, name, states)

    done = run_with_database(settings, cancel)
    logger.info(
        "runs of a schedule cancelled",
        extra={"action": "runs_cancelled", "schedule": name, "cancelled": done.not_started, "stopping": done.running},
    )
    print(cancelled_text(done, name))
    return 0


def pending_text(pending: Pending) -> str:
    """``289 runs not started yet and 1 running``."""
    parts = [f"{_runs(pending.not_started)} not started yet"] if pending.not_started else []
    if pending.running:
        parts.append(f"{pending.running:,} running" if parts else f"{_runs(pending.running)} running")
    return " and ".join(parts)


def cancelled_text(done: Pending, name: str) -> str:
    """What a bulk cancel did, in a line."""
    text = f'cancelled {_runs(done.not_started)} of "{name}"'
    if done.running == 1:
        text += "; asked 1 running run to stop: its worker stops it and marks it cancelled within a heartbeat"
    elif done.running:
        text += (
            f"; asked {done.running:,} running runs to stop: their workers stop them and mark them cancelled within"
            " a heartbeat"
        )
    return text


def _runs(count: int) -> str:
    return f"{count:,} run" + ("" if count == 1 else "s")


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


# prune ----------------------------------------------------------------------------------------------------


def prune_command(args: argparse.Namespace, settings: Settings) -> int:
    batch = retention.check_batch(args.batch)
    if args.older_than is not None:
        age = _older_than(args.older_than)
    elif settings.retention is not None:
        age = settings.retention
    else:
        raise InvalidInput(
            "retention is off (PUNCHCLOCK_RUN_RETENTION=off): pass --older-than DUR to prune runs anyway"
        )

    async def work(db: Database) -> tuple[datetime, retention.Progress | int]:
        cutoff = await db.now() - age
        if args.dry_run:
            return cutoff, await retention.count_prunable(db.conn, cutoff)
        return cutoff, await retention.prune(db.conn, cutoff, batch=batch, report=_progress)

    cutoff, done = run_with_database(settings, work)
    before = f"finished before {output.utc_time(cutoff)} (older than {format_duration(age)})"
    if isinstance(done, int):
        print(f"{done:,} runs {before} would be pruned; dry run, nothing deleted")
        return 0
    logger.info(
        "runs past the retention pruned",
        extra={"action": "runs_pruned", "runs": done.deleted, "before": cutoff.isoformat(), "by": "cli"},
    )
    took = format_duration(timedelta(seconds=done.seconds))
    print(f"pruned {done.deleted:,} runs {before} in {took} ({done.rate:,.0f} runs/s)")
    return 0


def _older_than(text: str) -> timedelta:
    age = option("--older-than", parse_duration, text)
    try:
        return retention.check_age(age)
    except InvalidInput as exc:
        raise InvalidInput(f"invalid --older-than {text}: {exc}") from None


def _progress(progress: retention.Progress) -> None:
    print(f"pruned {progress.deleted:,} runs so far ({progress.rate:,.0f} runs/s)", flush=True)


def _schedule_label(run: Run) -> str | None:
    if run.schedule_name is not None and run.schedule_id is None:
        return f"{run.schedule_name} (deleted)"
    return run.schedule_name

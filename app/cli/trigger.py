"""``punchclock schedules trigger NAME``: a manual run now, recorded first and published second.

The run row is committed before anything is sent, so the outbox guarantees it: if RabbitMQ is down the run
stays ``scheduled`` and the next tick publishes it (a warning, exit 0). With the in-memory broker of
``punchclock dev`` the broker lives in that other process, so this one only records the run and the dev
ticker publishes it. ``backfill`` and ``runs retry`` record and publish their runs the same way
(:func:`record_and_publish`, :func:`report`).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dramatiq.errors import BrokerError

from app.broker import MEMORY_BROKER
from app.cli import deployment, output
from app.cli.arguments import json_object
from app.cli.database import Database, run_with_database
from app.clock import publish_unpublished
from app.db.pool import create_pool
from app.db.queries import sql
from app.errors import InvalidInput, PunchclockError
from app.overlap import Overlap
from app.publisher import Publisher
from app.runs import Run, RunState, get_runs
from app.schedule_store import get_schedule
from app.settings import Settings

# What publishing raises when RabbitMQ cannot be reached (Dramatiq wraps pika's errors after its retries).
BROKER_ERRORS = (BrokerError, OSError)


@dataclass(frozen=True)
class Recorded:
    """The runs a command recorded, as they stand after publishing. ``sent`` is False when they were left for
    the running ``punchclock dev`` to publish; ``publish_error`` is what stopped publishing (RabbitMQ down)."""

    runs: list[Run]
    sent: bool
    publish_error: BaseException | None = None


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--args",
        metavar="JSON",
        help="keyword arguments for this run, merged over the schedule's: a key given here wins, the others stay",
    )
    parser.add_argument(
        "--replace-args", action="store_true", help="run with --args alone, without the schedule's other args"
    )
    parser.add_argument(
        "--force", action="store_true", help="run even if a run of the schedule holds its lock (overlap allow)"
    )
    parser.set_defaults(handler=trigger_command)


def trigger_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.replace_args and args.args is None:
        raise InvalidInput("--replace-args needs --args JSON: the arguments to run with instead of the schedule's")
    override = None if args.args is None else json_object("--args", args.args)
    # The run's args (the schedule's with --args merged over them, or --args alone) are checked against the actor
    # when this deployment registers it; a manual run receives no upstream outputs.
    actors = deployment.registered_actors() if override is not None else {}

    async def record(db: Database) -> list[int]:
        stored = await get_schedule(db.conn, args.name)
        schedule = stored.schedule
        options = schedule.message_options(stored.id)
        if args.force:
            options["overlap"] = "allow"
        arguments = run_args(schedule.args, override, replace=args.replace_args)
        if override is not None:
            try:
                schedule.check_args(arguments, actors.get(schedule.actor), overlap=Overlap(options["overlap"]))
            except InvalidInput as exc:
                raise InvalidInput(f"invalid --args: {exc}") from None
        run_id: int = await db.conn.fetchval(
            sql("insert_manual_run"), stored.id, schedule.name, schedule.actor, arguments, options
        )
        return [run_id]

    recorded = record_and_publish(settings, record)
    (run,) = recorded.runs
    kind = "manual, forced" if args.force else "manual"
    report(
        recorded,
        settings,
        recorded=f'run {run.id} of "{args.name}" recorded ({kind}, {run.actor})',
        done=f'run {run.id} of "{args.name}" {run.state} ({kind}, {run.actor})',
    )
    return 0


def run_args(schedule_args: Mapping[str, Any], given: dict[str, Any] | None, *, replace: bool) -> dict[str, Any]:
    """A manual run's keyword arguments: the schedule's with ``given`` merged over them, key by key at the top
    level (what one changes by hand is usually one argument); only ``given`` with ``replace``."""
    if given is None:
        return dict(schedule_args)
    return dict(given) if replace else {**schedule_args, **given}


def record_and_publish(
    settings: Settings, record: Callable[[Database], Awaitable[list[int]]], *, in_order: bool = False
) -> Recorded:
    """Run ``record`` (it inserts runs in state ``scheduled`` and returns their ids), then publish the outbox.

    ``in_order``: send on one thread, so the messages reach the queue in id order (a backfill, oldest first);
    otherwise the deployment's publisher spreads a large batch over its threads.
    """
    publisher = None if settings.broker_url == MEMORY_BROKER else deployment.publisher()

    async def session(db: Database) -> Recorded:
        run_ids = await record(db)
        if publisher is None:
            return Recorded(await get_runs(db.conn, run_ids), sent=False)
        sender = Publisher(publisher.broker, threads=1) if in_order else publisher
        pool = await create_pool(db.url, 2)
        try:
            await publish_unpublished(pool, sender)
        except BROKER_ERRORS as exc:
            return Recorded(await get_runs(db.conn, run_ids), sent=True, publish_error=exc)
        finally:
            await pool.close()
        return Recorded(await get_runs(db.conn, run_ids), sent=True)

    try:
        return run_with_database(settings, session)
    finally:
        if publisher is not None:
            publisher.broker.close()  # the pika connections of this command's publishing threads


def report(result: Recorded, settings: Settings, *, recorded: str, done: str) -> None:
    """Print ``done`` when every run was published; else ``recorded`` and what happens to the runs now.
    Runs that failed at once (their actor is not registered here; not retried) raise :class:`PunchclockError`."""
    if not result.sent:
        print(f"{recorded}; the running punchclock dev publishes {_them(result.runs)} within a second")
        return
    unsent = [run for run in result.runs if run.state is RunState.SCHEDULED]
    # Failed without ever being published: the actor is unknown here. (A run a fast worker already ran and
    # failed was published: that is the run's own outcome, not this command's.)
    failed = [run for run in result.runs if run.state is RunState.FAILED and run.enqueued_at is None]
    if result.publish_error is not None and unsent:
        print(recorded)
        them = _them(unsent)
        stays = "it stays" if len(unsent) == 1 else "they stay"
        output.warn(
            f"could not publish {_label(unsent)}: RabbitMQ unreachable ({_reason(result.publish_error)});"
            f" {stays} recorded and the next tick publishes {them}. Check PUNCHCLOCK_BROKER_URL"
            f" ({settings.broker_url.split('@')[-1]})"
        )
    elif failed:
        print(recorded)
        raise PunchclockError(f"{_label(failed)} failed: {failed[0].error}")
    else:
        print(done)


def _label(runs: Sequence[Run]) -> str:
    if len(runs) == 1:
        return f"run {runs[0].id}"
    return f"{len(runs)} runs (ids {runs[0].id} to {runs[-1].id})"


def _them(runs: Sequence[Run]) -> str:
    return "it" if len(runs) == 1 else "them"


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__

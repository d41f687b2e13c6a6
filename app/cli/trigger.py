"""``punchclock schedules trigger NAME``: a manual run now, recorded first and published second.

The run row is committed before anything is sent, so the outbox guarantees it: if RabbitMQ is down the run
stays ``scheduled`` and the next tick publishes it (a warning, exit 0). With the in-memory broker of
``punchclock dev`` the broker lives in that other process, so this one only records the run and the dev
ticker publishes it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from dramatiq.errors import BrokerError

from app.broker import MEMORY_BROKER
from app.cli import deployment, output
from app.cli.arguments import json_object
from app.cli.database import Database, run_with_database
from app.clock import publish_unpublished
from app.db.pool import create_pool
from app.db.queries import sql
from app.errors import PunchclockError
from app.runs import Run, RunState, get_run
from app.schedule_store import get_schedule
from app.settings import Settings

# What publishing raises when RabbitMQ cannot be reached (Dramatiq wraps pika's errors after its retries).
BROKER_ERRORS = (BrokerError, OSError)


@dataclass(frozen=True)
class Triggered:
    run: Run
    publish_error: BaseException | None = None


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--args", metavar="JSON", help="keyword arguments for this run (default: the schedule's)")
    parser.set_defaults(handler=trigger_command)


def trigger_command(args: argparse.Namespace, settings: Settings) -> int:
    override = None if args.args is None else json_object("--args", args.args)
    publisher = None if settings.broker_url == MEMORY_BROKER else deployment.publisher()

    async def trigger(db: Database) -> Triggered:
        stored = await get_schedule(db.conn, args.name)
        schedule = stored.schedule
        row = await db.conn.fetchrow(
            sql("insert_manual_run"),
            stored.id,
            schedule.name,
            schedule.actor,
            dict(schedule.args) if override is None else override,
            schedule.message_options(stored.id),
        )
        assert row is not None
        run = Run.from_row(row)
        if publisher is None:
            return Triggered(run)
        pool = await create_pool(db.url, 2)
        try:
            await publish_unpublished(pool, publisher)
        except BROKER_ERRORS as exc:
            return Triggered(run, exc)
        finally:
            await pool.close()
        return Triggered(await get_run(db.conn, run.id))

    try:
        triggered = run_with_database(settings, trigger)
    finally:
        if publisher is not None:
            publisher.broker.close()  # the pika connections of this command's publishing threads
    run = triggered.run
    recorded = f'run {run.id} of "{args.name}" recorded (manual, {run.actor})'
    if publisher is None:
        print(f"{recorded}; the running punchclock dev publishes it within a second")
    elif triggered.publish_error is not None:
        print(recorded)
        output.warn(
            f"could not publish run {run.id}: RabbitMQ unreachable ({_reason(triggered.publish_error)});"
            " it stays recorded and the next tick publishes it. Check PUNCHCLOCK_BROKER_URL"
            f" ({settings.broker_url.split('@')[-1]})"
        )
    elif run.state is RunState.FAILED:  # its actor is not registered here: failed at once, not retried
        print(recorded)
        raise PunchclockError(f"run {run.id} failed: {run.error}")
    else:
        print(f'run {run.id} of "{args.name}" {run.state} (manual, {run.actor})')
    return 0


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__

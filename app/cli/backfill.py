"""``punchclock schedules backfill NAME --from T --to T``: one run per cron instant of a past (or any) range.

The runs (trigger ``backfill``) are recorded in instant order, ids ascending, with the schedule's args and
options, then published oldest first through the outbox. The worker applies the schedule's overlap policy to
them like to any run. More than :data:`CONFIRM_ABOVE` instants need ``--yes``: a typo in a range should not
flood the queue.
"""

from __future__ import annotations

import argparse
import sys
from zoneinfo import ZoneInfo

from app.cli import output
from app.cli.arguments import instant
from app.cli.database import Database
from app.cli.trigger import record_and_publish, report
from app.cron import fires_between, validate_timezone
from app.errors import InvalidInput
from app.schedule_store import get_schedule, insert_backfill_runs
from app.settings import Settings

CONFIRM_ABOVE = 1000
# Past this many instants a range refused for want of --yes is not counted further ("at least …").
COUNT_UP_TO = 1_000_000


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--from", dest="start", required=True, metavar="T", help="first instant, ISO 8601 (naive: the schedule's zone)"
    )
    parser.add_argument("--to", dest="end", required=True, metavar="T", help="last instant, inclusive, likewise")
    parser.add_argument("--yes", action="store_true", help=f"confirm a backfill of more than {CONFIRM_ABOVE:,} runs")
    parser.set_defaults(handler=backfill_command)


def backfill_command(args: argparse.Namespace, settings: Settings) -> int:
    zone = ZoneInfo("UTC")  # the schedule's, once read

    async def record(db: Database) -> list[int]:
        nonlocal zone
        stored = await get_schedule(db.conn, args.name)
        s = stored.schedule
        if s.cron is None:
            raise InvalidInput(
                f'schedule "{s.name}" has no cron (it runs after {", ".join(s.after)}): it has no instants to backfill'
            )
        zone = validate_timezone(s.timezone)
        start, end = instant("--from", args.start, zone), instant("--to", args.end, zone)
        if start > end:
            raise InvalidInput(f"--from {args.start} is after --to {args.end}: swap them")
        instants = fires_between(s.cron, s.timezone, start, end, sys.maxsize if args.yes else COUNT_UP_TO)
        span = f"from {output.local_time(start, zone)} to {output.local_time(end, zone)}"
        if not instants:
            raise InvalidInput(
                f'schedule "{s.name}" ("{s.cron}", {s.timezone}) has no instant {span}: nothing to backfill;'
                " widen --from/--to"
            )
        if len(instants) > CONFIRM_ABOVE and not args.yes:
            count = f"at least {COUNT_UP_TO:,}" if len(instants) >= COUNT_UP_TO else f"{len(instants):,}"
            raise InvalidInput(
                f'backfill of "{s.name}" {span} would make {count} runs, more than {CONFIRM_ABOVE:,}:'
                " pass --yes to make them all, or narrow --from/--to"
            )
        return await insert_backfill_runs(db.conn, stored, instants)

    recorded = record_and_publish(settings, record, in_order=True)
    first, last = recorded.runs[0], recorded.runs[-1]
    count = len(recorded.runs)
    what = (
        f'{count} backfill run{"" if count == 1 else "s"} of "{args.name}" ({first.actor}, ids {first.id} to {last.id})'
    )
    span = f"first {output.local_time(first.scheduled_for, zone)}, last {output.local_time(last.scheduled_for, zone)}"
    report(recorded, settings, recorded=f"{what} recorded: {span}", done=f"{what} enqueued: {span}")
    return 0

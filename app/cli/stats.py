"""``punchclock stats [--since DUR] [--schedule NAME] [--json]``: per schedule, how its recent runs went.

For the runs created in the window: how many in each state, the success rate (succeeded over succeeded, failed
and timed out), p50 / p95 duration (``~``: estimated from the stats rollup's histogram, within 4.4 %, for a
schedule with more than ``EXACT_UP_TO`` timed runs in the window), and the durations of the last ten runs as a
sparkline, oldest to newest. PostgreSQL computes the aggregates from the stats rollup and the runs at the edge of
the window (``cli_stats_rollup.sql``), so a window of millions of runs costs about as much as a small one;
:mod:`app.stats` turns them into figures and text.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from app.cli import output
from app.cli.arguments import json_flag, option
from app.cli.database import Database, run_with_database
from app.db.queries import sql
from app.durations import format_duration, parse_duration
from app.errors import InvalidInput
from app.runs import RunState
from app.settings import Settings
from app.stats import (
    EXACT_UP_TO,
    ScheduleStats,
    histogram_percentile,
    percent_text,
    seconds_text,
    sparkline,
    stats_json,
)

DEFAULT_SINCE = "24h"
# A century holds every run recorded; much further back, PostgreSQL's now() - since leaves its timestamp range.
MAX_SINCE = timedelta(days=36500)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        metavar="DUR",
        help=f"runs created this long ago or later (default {DEFAULT_SINCE})",
    )
    parser.add_argument("--schedule", metavar="NAME", help="only this schedule's runs (a deleted one's too)")
    json_flag(parser)
    parser.set_defaults(handler=stats_command)


def stats_command(args: argparse.Namespace, settings: Settings) -> int:
    since = option("--since", parse_duration, args.since)
    if since > MAX_SINCE:
        raise InvalidInput(
            f"invalid --since {args.since}: must be at most {format_duration(MAX_SINCE)}, which already reaches"
            " back past every run"
        )

    async def fetch(db: Database) -> list[ScheduleStats]:
        return await schedule_stats(db, since, args.schedule)

    stats = run_with_database(settings, fetch)
    if args.json:
        shown = {"since_seconds": output.seconds(since), "schedules": [stats_json(s) for s in stats]}
        output.print_json(shown if args.schedule is None else {"schedule": args.schedule, **shown})
        return 0
    if not stats:
        of = "" if args.schedule is None else f' of "{args.schedule}"'
        print(f"no runs{of} in the last {format_duration(since)}")
        return 0
    # one column per state that occurs, in the order of the state machine
    states = [str(state) for state in RunState if any(s.states.get(state) for s in stats)]
    output.print_table(
        (
            (
                s.schedule or output.NONE,
                s.runs,
                *(s.states.get(state, 0) for state in states),
                percent_text(s.success_rate),
                seconds_text(s.p50, approximate=s.approximate),
                seconds_text(s.p95, approximate=s.approximate),
                sparkline(s.recent) or output.NONE,
            )
            for s in stats
        ),
        ("SCHEDULE", "RUNS", *(state.upper() for state in states), "SUCCESS", "P50", "P95", "LAST 10"),
    )
    return 0


async def schedule_stats(db: Database, since: timedelta, schedule: str | None = None) -> list[ScheduleStats]:
    """Per schedule name (only ``schedule``'s, when given), the runs created in the last ``since`` by the
    database's clock."""
    return [_stats(row) for row in await db.conn.fetch(sql("cli_stats_rollup"), since, schedule, EXACT_UP_TO)]


def _stats(row: Mapping[str, Any]) -> ScheduleStats:
    recent = list(reversed(row["recent"]))
    if row["timed"] <= EXACT_UP_TO:
        return ScheduleStats(row["schedule_name"], row["states"], row["p50"], row["p95"], recent)
    histogram = dict(zip(row["buckets"], row["counts"], strict=True))
    return ScheduleStats(
        row["schedule_name"],
        row["states"],
        histogram_percentile(histogram, 0.5),
        histogram_percentile(histogram, 0.95),
        recent,
        approximate=True,
    )

"""How late a cron fire reaches its actor, through the real processes, when idle.

Starts ``dramatiq app.actors`` and ``periodiq app.actors`` on a scratch database, adds a ``* * * * *`` probe
schedule, waits for ``--instants`` minute instants, and prints for each run ``started_at - scheduled_for``: the
time from the cron instant (when periodiq sends its tick) to the actor starting. That bounds "periodiq's tick
-> the actor" from above, since it also includes periodiq's own send. Aim (issue 2): <= 100 ms when idle.
Takes about ``instants`` + 1 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/fire_latency.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from bench import harness  # noqa: E402

DATABASE = "punchclock_bench_latency"
AIM_MS = 100.0


async def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instants", type=int, default=2, help="minute instants to wait for")
    args = parser.parse_args()
    admin = harness.admin_database_url(os.environ.get("PUNCHCLOCK_DATABASE_URL"))
    asyncio.run(harness.recreate_database(admin, DATABASE))
    url = harness.with_path(admin, DATABASE)
    env = {
        **os.environ,
        "PUNCHCLOCK_DATABASE_URL": url,
        "PUNCHCLOCK_SCHEDULES_MODULE": "",
        "PUNCHCLOCK_LOG_LEVEL": "WARNING",
    }
    add = [str(harness.BIN / "punchclock"), "schedules", "add", "latency", "--actor", "probe", "--cron", "* * * * *"]
    subprocess.run(add, cwd=harness.ROOT, env=env, check=True, capture_output=True)
    logs = harness.ROOT / ".punchclock"
    started = [
        harness.start_process(command, env, logs / log)
        for command, log in (
            (harness.dramatiq_command("app.actors", threads=4), "bench-worker.log"),
            ([str(harness.BIN / "periodiq"), "app.actors"], "bench-clock.log"),
        )
    ]
    print(f"waiting for {args.instants} minute instants (about {args.instants + 1} min)...", flush=True)
    query = "SELECT scheduled_for, started_at, state FROM runs WHERE state = 'succeeded' ORDER BY scheduled_for"
    try:
        deadline = time.monotonic() + 60 * (args.instants + 2)
        rows: list[asyncpg.Record] = []
        while time.monotonic() < deadline:
            rows = asyncio.run(sql(url, query))
            if len(rows) >= args.instants:
                break
            time.sleep(1)
    finally:
        for process in started:
            harness.stop_process(process)
        asyncio.run(harness.drop_database(admin, DATABASE))
    if len(rows) < args.instants:
        print(f"FAILED: only {len(rows)} runs succeeded; see .punchclock/bench-*.log")
        return 1
    delays = [(r["started_at"] - r["scheduled_for"]).total_seconds() * 1000 for r in rows]
    for row, delay in zip(rows, delays, strict=True):
        print(f"{row['scheduled_for'].isoformat()}  actor started {delay:7.1f} ms after the instant")
    median = statistics.median(delays)
    met = harness.verdict(median <= AIM_MS, f"<= {AIM_MS:.0f} ms")
    print(f"cron instant -> actor start, median {median:.1f} ms, max {max(delays):.1f} ms: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

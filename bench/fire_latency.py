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
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from app.db.embedded import embedded_database_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATABASE = "punchclock_bench_latency"
AIM_MS = 100.0


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


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
    admin = os.environ.get("PUNCHCLOCK_DATABASE_URL") or embedded_database_url(ROOT / ".punchclock" / "bench-pgdata")
    asyncio.run(sql(admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
    asyncio.run(sql(admin, f"CREATE DATABASE {DATABASE}"))
    url = with_database(admin, DATABASE)
    env = {
        **os.environ,
        "PUNCHCLOCK_DATABASE_URL": url,
        "PUNCHCLOCK_SCHEDULES_MODULE": "",
        "PUNCHCLOCK_LOG_LEVEL": "WARNING",
    }
    add = [str(BIN / "punchclock"), "schedules", "add", "latency", "--actor", "probe", "--cron", "* * * * *"]
    subprocess.run(add, cwd=ROOT, env=env, check=True, capture_output=True)
    logs = ROOT / ".punchclock"
    started = []
    for command, log in (
        ([str(BIN / "dramatiq"), "app.actors", "--processes", "1", "--threads", "4"], "bench-worker.log"),
        ([str(BIN / "periodiq"), "app.actors"], "bench-clock.log"),
    ):
        with open(logs / log, "wb") as output:  # the child keeps its own copy of the descriptor
            started.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT
                )
            )
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
            # SIGTERM to the main process only, as Ctrl-C or `docker stop` do: dramatiq forwards it once to its
            # workers (a second SIGTERM interrupts their graceful stop and leaves Dramatiq's event loop running).
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        asyncio.run(sql(admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
    if len(rows) < args.instants:
        print(f"FAILED: only {len(rows)} runs succeeded; see .punchclock/bench-*.log")
        return 1
    delays = [(r["started_at"] - r["scheduled_for"]).total_seconds() * 1000 for r in rows]
    for row, delay in zip(rows, delays, strict=True):
        print(f"{row['scheduled_for'].isoformat()}  actor started {delay:7.1f} ms after the instant")
    median = statistics.median(delays)
    verdict = "met" if median <= AIM_MS else "NOT met"
    print(f"cron instant -> actor start, median {median:.1f} ms, max {max(delays):.1f} ms: {verdict} (aim <= 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

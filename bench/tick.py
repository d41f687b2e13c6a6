"""Time the clock's tick against the real RabbitMQ and PostgreSQL (issue 2's acceptance; a script, not a test).

    python bench/tick.py [--schedules-due 10000] [--schedules-total 100000] [--small-due 100] [--batch 500]
                         [--no-confirm]

One run measures, through one ``RabbitmqBroker`` with one publisher-confirm setting:

1. the ceiling: a bare ``broker.enqueue`` of N messages from one thread (msg/s), before and after the fan-out so
   that a drift of the machine shows and the ratio compares with their mean;
2. fan-out: ``fire_due`` with N schedules due at once (runs/s, its ratio to the ceiling, its publishing share);
3. the small tick: ``fire_due`` with ``--small-due`` of ``--schedules-total`` schedules due, the recovery sweep
   included as in a production tick (median/max ms), and
   the ``EXPLAIN`` of the claim query, which must use the ``schedules_due`` index;
4. latency when idle: from calling ``fire_due`` on one due schedule to a pika consumer receiving its message;
5. the process's RSS, to show a tick's memory is bounded by ``--batch``, not by the number of schedules.

Aims (issue 2): fan-out >= 80 % of the ceiling, small tick <= 100 ms, fire -> delivery <= 100 ms; the summary
says which are met. Exit status 1 only when a correctness check fails (a run or message missing).
The database is a fresh ``punchclock_bench`` (embedded in ``.punchclock/bench-pgdata`` unless
``PUNCHCLOCK_DATABASE_URL`` is set), dropped at the end. Messages go to the bench's own queue, purged between
phases and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import queue
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq
import pika  # type: ignore[import-untyped]
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from app.clock import TickReport, fire_due
from app.db.pool import create_pool
from app.db.queries import sql
from app.notify.store import create_notifications
from app.publisher import Publisher, PublishOutcome, run_message
from app.recovery import Sweep
from app.settings import Settings

if TYPE_CHECKING:
    from app.db.pool import Pool

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/tick.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from bench import harness  # noqa: E402

SWEEP = Sweep(
    republish_after=timedelta(minutes=10), create_notifications=create_notifications, send_notification=lambda _: None
)

DATABASE = "punchclock_bench"
QUEUE = "punchclock_bench"
"""The bench's own queue, not ``default``: purging ``default`` would wipe real work (and the tests' messages,
when they run at the same time). The queue's name changes nothing in what is measured."""
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
"""Where schedules not due wait: later than any instant the bench fires."""
SMALL_REPEATS = 5
LATENCY_REPEATS = 20
AIM_RATIO = 0.80
AIM_SMALL_MS = 100.0
AIM_DELIVERY_MS = 100.0

INSERT_SCHEDULES = """
INSERT INTO schedules (name, actor, cron, next_fire_at)
SELECT 'bench-' || g, 'probe', '* * * * *', CASE WHEN g <= $2::int THEN $3::timestamptz ELSE $4::timestamptz END
FROM generate_series(1, $1::int) AS g
"""
# Make the schedules with ids in [$1, $2] due at $3 and push every other due one far away: a fresh due set.
RESET_DUE = """
UPDATE schedules
SET next_fire_at = CASE WHEN id BETWEEN $1::bigint AND $2::bigint THEN $3::timestamptz ELSE $4::timestamptz END
WHERE id BETWEEN $1 AND $2 OR next_fire_at < $4
"""


class TimedPublisher(Publisher):
    """The real publisher, adding up the wall time spent inside ``publish`` (the broker's share of a tick)."""

    def __init__(self, broker: dramatiq.Broker, threads: int) -> None:
        super().__init__(broker, threads=threads)
        self.seconds = 0.0

    def publish(self, runs: Sequence[Mapping[str, Any]]) -> PublishOutcome:
        started = time.perf_counter()
        try:
            return super().publish(runs)
        finally:
            self.seconds += time.perf_counter() - started


@dataclass
class Results(harness.Checks):
    ceiling_msgs: list[float] = field(default_factory=list)
    parallel_ceiling_msgs: float = 0.0
    fanout_runs: float = 0.0
    fanout_publish_share: float = 0.0
    small_ms: list[float] = field(default_factory=list)
    small_publish_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    rss_kib: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Bench:
    args: argparse.Namespace
    broker_url: str
    broker: RabbitmqBroker
    publisher: TimedPublisher
    pool: Pool
    results: Results = field(default_factory=Results)

    async def fire(self, now: datetime, **kwargs: Any) -> tuple[TickReport, float, float]:
        """``fire_due`` at ``now``: its report, its wall time and the part of it spent publishing (seconds)."""
        self.publisher.seconds = 0.0
        started = time.perf_counter()
        report = await fire_due(self.pool, self.publisher, now, **kwargs)
        return report, time.perf_counter() - started, self.publisher.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules-due", type=int, default=10_000, help="fan-out size and ceiling message count")
    parser.add_argument("--schedules-total", type=int, default=100_000, help="schedules in the small-tick database")
    parser.add_argument("--small-due", type=int, default=100, help="schedules due in the small tick")
    parser.add_argument("--batch", type=int, default=500, help="fire_due's batch")
    parser.add_argument("--no-confirm", action="store_true", help="publish without publisher confirms")
    args = parser.parse_args()
    # Per-run INFO logs would cost more than the work measured.
    logging.getLogger("app").setLevel(logging.WARNING)
    results = asyncio.run(run(args, Settings.from_env()))
    raise SystemExit(1 if results.failures else 0)


async def run(args: argparse.Namespace, settings: Settings) -> Results:
    confirm = not args.no_confirm
    admin_url = harness.admin_database_url(settings.database_url)
    broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=confirm, middleware=[])
    dramatiq.actor(actor_name="probe", queue_name=QUEUE, broker=broker)(lambda **kwargs: None)
    print(
        f"broker {harness.redact(settings.broker_url)} (queue {QUEUE!r}),"
        f" publisher confirms {'on' if confirm else 'off'}, batch {args.batch}"
    )
    await harness.recreate_database(admin_url, DATABASE)
    pool = await create_pool(harness.with_path(admin_url, DATABASE), 4)
    bench = Bench(args, settings.broker_url, broker, TimedPublisher(broker, settings.publish_threads), pool)
    try:
        record_rss(bench.results, "start")
        ceiling(bench)
        await fanout(bench)
        record_rss(bench.results, "after fan-out")
        ceiling(bench)  # again: the ratio compares with the mean of the two, around the fan-out
        parallel_ceiling(bench)
        await small_tick(bench)
        record_rss(bench.results, "after small tick")
        await latency(bench)
    finally:
        await pool.close()
        broker.close()
        harness.delete_queues(settings.broker_url, [QUEUE])
        await harness.drop_database(admin_url, DATABASE)
    summary(bench, confirm)
    return bench.results


def ceiling(bench: Bench) -> None:
    """Bare ``broker.enqueue`` from one thread, messages shaped like the clock's, connection already open."""
    count = bench.args.schedules_due
    print(f"\n== ceiling: bare broker.enqueue of {count:,} messages from one thread")
    purge(bench.broker_url)
    bench.broker.declare_queue(QUEUE, ensure=True)  # opens this thread's connection outside the timing
    options = {"max_retries": 3, "min_backoff": 10_000, "max_backoff": 300_000, "time_limit": 1_500_000}
    started = time.perf_counter()
    for run_id in range(count):
        bench.broker.enqueue(run_message({"id": run_id, "actor": "probe", "args": {}, "options": options}, QUEUE))
    seconds = time.perf_counter() - started
    waiting = harness.queue_length(bench.broker_url, QUEUE)
    purge(bench.broker_url)
    bench.results.ceiling_msgs.append(count / seconds)
    print(f"{count:,} messages in {seconds:.2f} s = {count / seconds:,.0f} msg/s")
    bench.results.check(waiting == count, f"{waiting:,} messages in {QUEUE!r}, expected {count:,}")


def parallel_ceiling(bench: Bench) -> None:
    """Bare ``broker.enqueue`` spread over as many threads as the publisher uses: what the fan-out could reach
    if the database cost nothing (the issue's ceiling is the one-thread publish above)."""
    count, threads = bench.args.schedules_due, bench.publisher.threads
    print(f"\n== parallel ceiling: bare broker.enqueue of {count:,} messages on {threads} threads")
    purge(bench.broker_url)
    options = {"max_retries": 3, "min_backoff": 10_000, "max_backoff": 300_000, "time_limit": 1_500_000}

    def send(run_ids: range) -> None:
        for run_id in run_ids:
            bench.broker.enqueue(run_message({"id": run_id, "actor": "probe", "args": {}, "options": options}, QUEUE))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda ids: bench.broker.declare_queue(QUEUE, ensure=True), range(threads)))
        started = time.perf_counter()
        list(pool.map(send, [range(i, count, threads) for i in range(threads)]))
        seconds = time.perf_counter() - started
    waiting = harness.queue_length(bench.broker_url, QUEUE)
    purge(bench.broker_url)
    bench.results.parallel_ceiling_msgs = count / seconds
    print(f"{count:,} messages in {seconds:.2f} s = {count / seconds:,.0f} msg/s")
    bench.results.check(waiting == count, f"{waiting:,} messages in {QUEUE!r}, expected {count:,}")


async def fanout(bench: Bench) -> None:
    count, r = bench.args.schedules_due, bench.results
    print(f"\n== fan-out: {count:,} schedules due at once")
    purge(bench.broker_url)
    at = minute_instant()
    await seed(bench, count, count, at)
    report, seconds, publishing = await bench.fire(at + timedelta(seconds=1), batch=bench.args.batch)
    async with bench.pool.acquire() as conn:
        enqueued = await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'enqueued'")
    waiting = harness.queue_length(bench.broker_url, QUEUE)
    purge(bench.broker_url)
    r.fanout_runs, r.fanout_publish_share = count / seconds, publishing / seconds
    print(f"{report}: {seconds:.2f} s = {r.fanout_runs:,.0f} runs/s")
    print(
        f"  Publisher.publish {publishing:.2f} s ({publishing / seconds:.0%}) = {count / publishing:,.0f} msg/s;"
        f" the rest (claim, due_fires, insert, advance, mark) {seconds - publishing:.2f} s"
    )
    r.check(report.fired == count and report.published == count, f"{count:,} fired and published")
    r.check(enqueued == count, f"{enqueued:,} runs enqueued, expected {count:,}")
    r.check(waiting == count, f"{waiting:,} messages in {QUEUE!r}, expected {count:,}")


async def small_tick(bench: Bench) -> None:
    total, due, r = bench.args.schedules_total, bench.args.small_due, bench.results
    print(f"\n== small tick: {due:,} of {total:,} schedules due")
    purge(bench.broker_url)
    at = minute_instant()
    await seed(bench, total, due, at)
    async with bench.pool.acquire() as conn:
        plan = await conn.fetch("EXPLAIN " + sql("claim_due_schedules"), at + timedelta(seconds=1), bench.args.batch)
    print("EXPLAIN claim_due_schedules:")
    for row in plan:
        print(f"  {row[0]}")
    r.check(any("schedules_due" in row[0] for row in plan), "the claim query uses the schedules_due index")
    for repeat in range(SMALL_REPEATS):
        if repeat:  # the previous due set now waits a minute ahead: push it away and make the next set due
            async with bench.pool.acquire() as conn:
                await conn.execute(RESET_DUE, repeat * due + 1, (repeat + 1) * due, at, FAR_FUTURE)
        # As a production tick does: fire, then the recovery sweep (nothing to recover here: its queries' cost).
        report, seconds, publishing = await bench.fire(
            at + timedelta(seconds=1), batch=bench.args.batch, recovery=SWEEP
        )
        r.small_ms.append(seconds * 1000)
        r.small_publish_ms.append(publishing * 1000)
        r.check(report.published == due, f"tick {repeat + 1}: {report.published} published, expected {due}")
    purge(bench.broker_url)
    print("ms per tick:           " + ", ".join(f"{ms:5.1f}" for ms in r.small_ms))
    print("of which publishing:   " + ", ".join(f"{ms:5.1f}" for ms in r.small_publish_ms))


async def seed(bench: Bench, total: int, due: int, at: datetime) -> None:
    """Emptied tables, then ``total`` schedules of which the first ``due`` are due at ``at``; analyzed, so that the
    claim query's plan is the one a real table of that size gets."""
    async with bench.pool.acquire() as conn:
        await conn.execute(harness.EMPTY_TABLES)
        await conn.execute(INSERT_SCHEDULES, total, due, at, FAR_FUTURE)
        await conn.execute("ANALYZE schedules")


async def latency(bench: Bench) -> None:
    """One schedule due per round; it advances a minute each fire, so round i fires instant ``at + i min``."""
    print(f"\n== latency: fire_due (one schedule due) -> message delivered to a consumer, {LATENCY_REPEATS} rounds")
    purge(bench.broker_url)
    at = minute_instant() + timedelta(days=1)
    async with bench.pool.acquire() as conn:
        await conn.execute(RESET_DUE, 1, 1, at, FAR_FUTURE)
    published = 0
    with consumer(bench.broker_url) as delivered:
        for repeat in range(LATENCY_REPEATS):
            started = time.perf_counter()
            report = await fire_due(bench.pool, bench.publisher, at + timedelta(minutes=repeat, seconds=1))
            received = delivered.get(timeout=5)
            published += report.published
            bench.results.delivery_ms.append((received - started) * 1000)
    purge(bench.broker_url)
    print("ms: " + ", ".join(f"{ms:.1f}" for ms in bench.results.delivery_ms))
    bench.results.check(published == LATENCY_REPEATS, f"{published} published, expected {LATENCY_REPEATS}")


@contextmanager
def consumer(broker_url: str) -> Iterator[queue.Queue[float]]:
    """A pika consumer on its own thread and connection; yields a queue of ``perf_counter()`` at each delivery."""
    delivered: queue.Queue[float] = queue.Queue()
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.basic_consume(QUEUE, lambda *_: delivered.put(time.perf_counter()), auto_ack=True)
    thread = threading.Thread(target=channel.start_consuming, name="bench-consumer", daemon=True)
    thread.start()
    try:
        yield delivered
    finally:
        connection.add_callback_threadsafe(channel.stop_consuming)
        thread.join(timeout=5)
        connection.close()


def purge(broker_url: str) -> None:
    harness.purge_queues(broker_url, [QUEUE])


def minute_instant() -> datetime:
    """The start of the current UTC minute: a ``* * * * *`` instant."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def record_rss(r: Results, moment: str) -> None:
    """Peak RSS (``ru_maxrss``, KiB on Linux) and current RSS (``/proc/self/statm``) at ``moment``."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        current = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:  # not Linux: the peak alone
        current = 0
    r.rss_kib[moment] = (peak, current)


def summary(bench: Bench, confirm: bool) -> None:
    r, args = bench.results, bench.args
    ceiling_mean = statistics.mean(r.ceiling_msgs)
    ratio = r.fanout_runs / ceiling_mean
    small_median, small_max = statistics.median(r.small_ms), max(r.small_ms)
    delivery_median, delivery_max = statistics.median(r.delivery_ms), max(r.delivery_ms)
    rows = [
        (
            f"ceiling: bare publish, confirms {'on' if confirm else 'off'} (before / after)",
            f"{ceiling_mean:,.0f} msg/s",
            " / ".join(f"{rate:,.0f}" for rate in r.ceiling_msgs),
        ),
        (
            f"fan-out: {args.schedules_due:,} due, batch {args.batch}",
            f"{r.fanout_runs:,.0f} runs/s",
            f"{r.fanout_publish_share:.0%} of it publishing",
        ),
        ("fan-out / ceiling", f"{ratio:.0%}", harness.verdict(ratio >= AIM_RATIO, f">= {AIM_RATIO:.0%}")),
        (
            f"bare publish on {bench.publisher.threads} threads (the publisher's)",
            f"{r.parallel_ceiling_msgs:,.0f} msg/s",
            f"fan-out reaches {r.fanout_runs / r.parallel_ceiling_msgs:.0%} of it",
        ),
        (
            f"small tick: {args.small_due:,} of {args.schedules_total:,}, median",
            f"{small_median:.1f} ms",
            harness.verdict(small_median <= AIM_SMALL_MS, f"<= {AIM_SMALL_MS:.0f} ms")
            + f"; publishing {statistics.median(r.small_publish_ms):.1f} ms of it",
        ),
        (f"small tick: max of {SMALL_REPEATS}", f"{small_max:.1f} ms", harness.verdict(small_max <= AIM_SMALL_MS)),
        (
            "fire -> message delivered, median",
            f"{delivery_median:.1f} ms",
            harness.verdict(delivery_median <= AIM_DELIVERY_MS, f"<= {AIM_DELIVERY_MS:.0f} ms"),
        ),
        (
            f"fire -> message delivered, max of {LATENCY_REPEATS}",
            f"{delivery_max:.1f} ms",
            harness.verdict(delivery_max <= AIM_DELIVERY_MS),
        ),
    ]
    rows += [
        (f"RSS {moment} (peak / now)", f"{peak / 1024:.0f} / {now / 1024:.0f} MiB", "")
        for moment, (peak, now) in r.rss_kib.items()
    ]
    harness.print_summary(rows)
    if r.failures:
        print("checks failed: " + "; ".join(r.failures))


if __name__ == "__main__":
    main()

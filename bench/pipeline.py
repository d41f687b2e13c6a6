"""Drain N no-op messages through bare Dramatiq and through punchclock's full stack (issue 3; a script, not a test).

    python bench/pipeline.py [--messages 20000] [--threads 8]

One run, one phase after the other, against the same RabbitMQ (the bench's own vhost ``punchclock_bench``, created
with ``rabbitmqctl`` when missing, so that the ``default`` queue of a test run is never touched) and with the same
worker flags (``--processes 1 --threads 8``):

1. bare: ``dramatiq bench.bare_actors``, a no-op actor and Dramatiq's default middleware;
2. full stack, overlap ``allow``: ``dramatiq app.actors`` running N ``probe`` runs of one schedule (no sleep, no
   URL: a no-op), inserted into ``runs`` and published by ``app.clock.publish_unpublished`` as the clock does;
3. full stack, overlap ``skip`` with a lock key per run (``bench:{fail_times}``): the same plus an uncontended
   lease taken and freed by every run, i.e. what the lease costs.

Every run has the args ``{"fail_times": -i}``: a number per run for the lock key that changes nothing (probe
fails while its attempt is <= ``fail_times``: never), so probe returns None like the bare no-op.

Method. Each worker boots on an empty queue and is then stopped (SIGSTOP) while the N messages are published
(publisher confirms on); the clock and the CPU counters start when it is continued (SIGCONT), so neither the boot
(imports, pool, migrations) nor the publishing is measured. The drain ends, bare, when the queue is seen empty
(the at most 2 x threads messages prefetched by then are a few ms of work; that all were acknowledged is checked
after the worker stops, when an unacknowledged one would be back in the queue) and, full stack, at the last run's
``finished_at``. CPU is user + system time from ``/proc``: the worker's processes, the scratch database's
backends, the RabbitMQ server (shared with anything else using it). Database round trips per run: the scratch
database's transactions (``pg_stat_database``: committed + rolled back) over the drain, minus the bench's own
polls, divided by N. Each statement the worker sends outside a transaction block is one round trip and one
transaction (``pg_stat_statements`` is not loaded on the embedded server); ``pg_stat_user_functions`` counts the
start and finish calls among them.

Aims (issue 3): full stack >= 25 % of bare, <= 3 database round trips per run. Exit status 1 only when a check
fails (a message or run missing). The database is a fresh ``punchclock_bench_pipeline`` (embedded in
``.punchclock/bench-pgdata`` unless ``PUNCHCLOCK_DATABASE_URL`` is set), dropped at the end; the bench's queues
are deleted from the vhost at the end. Worker logs: ``.punchclock/bench-pipeline-*.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pika  # type: ignore[import-untyped]
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from app.clock import publish_unpublished
from app.db.pool import create_pool
from app.publisher import Publisher
from app.schedule import Schedule
from app.settings import Settings

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/pipeline.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from bench import harness  # noqa: E402

DATABASE = "punchclock_bench_pipeline"
VHOST = "punchclock_bench"
BARE_ACTOR, BARE_QUEUE = "noop", "bench"  # bench/bare_actors.py
FULL_QUEUES = ("default", "clock", "notify")  # the queues of app.actors' actors; probe's is "default"
QUEUES = (BARE_QUEUE, *FULL_QUEUES)  # deleted, with their delay and dead-letter queues, from the bench's vhost
SCHEDULE = "bench-pipeline"
BARE_POLL_S = 0.005
FULL_POLL_S = 0.1
AIM_RATIO = 0.25
AIM_ROUND_TRIPS = 3.0
ISSUE_BARE, ISSUE_ONE_INSERT = 6_700, 2_100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A run's start and finish: one statement each, on the worker thread's own connection (no pool, no reset).
EXPECTED_ROUND_TRIPS = 2

INSERT_SCHEDULE = """
INSERT INTO schedules (name, actor, cron, overlap, lock_key) VALUES ($1, 'probe', NULL, $2, $3) RETURNING id
"""
INSERT_RUNS = """
INSERT INTO runs (schedule_id, schedule_name, actor, args, options, scheduled_for, trigger)
SELECT $1, $2, 'probe', jsonb_build_object('fail_times', -g), $3::jsonb, now(), 'manual'
FROM generate_series(1, $4::int) AS g
"""
FINISHED = "state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')"
TRANSACTIONS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
FUNCTION_CALLS = "SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname LIKE 'punchclock_%'"


@dataclass
class Phase:
    """One drain: N messages, the wall time from SIGCONT to the last one done, and what it cost."""

    name: str
    messages: int
    publish_seconds: float = 0.0
    seconds: float = 0.0
    worker_cpu: float = 0.0
    postgres_cpu: float | None = None
    rabbitmq_cpu: float | None = None
    transactions: int | None = None
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def per_message_ms(self, cpu: float | None) -> str:
        return "n/a" if cpu is None else f"{cpu / self.messages * 1000:.2f} ms"

    @property
    def round_trips(self) -> float | None:
        return None if self.transactions is None else self.transactions / self.messages

    def report(self) -> None:
        print(
            f"{self.messages:,} in {self.seconds:.2f} s = {self.rate:,.0f}/s; CPU per message: worker"
            f" {self.per_message_ms(self.worker_cpu)}, PostgreSQL {self.per_message_ms(self.postgres_cpu)},"
            f" RabbitMQ {self.per_message_ms(self.rabbitmq_cpu)}"
        )
        if self.round_trips is not None:
            calls = ", ".join(
                f"{name} {count / self.messages:.2f}" for name, count in sorted(self.calls.items()) if count
            )
            print(
                f"database: {self.transactions:,} transactions = {self.round_trips:.2f} round trips per run"
                + (f" (function calls per run: {calls})" if calls else "")
            )


@dataclass
class Results(harness.Checks):
    phases: list[Phase] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages (runs) per phase")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (one process)")
    args = parser.parse_args()
    results = asyncio.run(run(args, Settings.from_env()))
    raise SystemExit(1 if results.failures else 0)


async def run(args: argparse.Namespace, settings: Settings) -> Results:
    broker_url = harness.with_path(settings.broker_url, VHOST)
    harness.ensure_vhost(broker_url)
    admin_url = harness.admin_database_url(settings.database_url)
    url = harness.with_path(admin_url, DATABASE)
    print(
        f"broker {harness.redact(broker_url)}, database {DATABASE}, {args.messages:,} messages per phase,"
        f" workers: --processes 1 --threads {args.threads}; {os.cpu_count()} CPUs"
    )
    results = Results()
    harness.delete_queues(broker_url, QUEUES, vhost=VHOST)
    await harness.recreate_database(admin_url, DATABASE, track_functions=True)
    try:
        results.phases.append(bare(args, settings.publish_threads, broker_url, results))
        for lease in (False, True):
            results.phases.append(await full_stack(args, settings, broker_url, admin_url, url, results, lease=lease))
    finally:
        harness.delete_queues(broker_url, QUEUES, vhost=VHOST)
        await harness.drop_database(admin_url, DATABASE)
    summary(results)
    return results


# -- phases --------------------------------------------------------------------------------------------------------


def bare(args: argparse.Namespace, threads: int, broker_url: str, results: Results) -> Phase:
    """``threads``: sending threads, as many as the full stack's publisher uses."""
    phase = Phase("bare Dramatiq", args.messages)
    print(f"\n== {phase.name}: dramatiq bench.bare_actors, {phase.messages:,} no-op messages")
    broker = RabbitmqBroker(url=broker_url, confirm_delivery=True, middleware=[])
    actor = dramatiq.actor(actor_name=BARE_ACTOR, queue_name=BARE_QUEUE, broker=broker)(_noop)
    env = {**os.environ, "PUNCHCLOCK_BROKER_URL": broker_url}
    try:
        with worker("bench.bare_actors", args.threads, env, "bare") as dramatiq_worker:
            dramatiq_worker.wait_booted(broker_url, BARE_QUEUE)
            dramatiq_worker.pause()
            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda n: [actor.send() for _ in range(n)], split(phase.messages, threads)))
            phase.publish_seconds = time.perf_counter() - started
            waiting = harness.queue_length(broker_url, BARE_QUEUE)
            prefetched = 2 * args.threads  # delivered to the paused worker, not yet acknowledged
            results.check(
                phase.messages - prefetched <= waiting <= phase.messages,
                f"{waiting:,} messages ready (+ up to {prefetched} prefetched), expected {phase.messages:,}",
            )
            before = cpu(dramatiq_worker.pids()), cpu(rabbitmq_pids())
            resumed = time.perf_counter()
            dramatiq_worker.resume()
            deadline = resumed + 60 + phase.messages / 500
            with harness.amqp_channel(broker_url) as channel:
                while waiting and time.perf_counter() < deadline:
                    time.sleep(BARE_POLL_S)
                    waiting = channel.queue_declare(BARE_QUEUE, passive=True).method.message_count
            phase.seconds = time.perf_counter() - resumed
            after = cpu(dramatiq_worker.pids()), cpu(rabbitmq_pids())
    finally:
        broker.close()
    phase.worker_cpu = cpu_delta(before[0], after[0])
    phase.rabbitmq_cpu = cpu_delta(before[1], after[1]) if after[1] else None
    left = harness.queue_length(broker_url, BARE_QUEUE)  # the worker is gone: anything unacknowledged is back
    results.check(left == 0, f"{left:,} messages left in {BARE_QUEUE!r} once the worker stopped, expected 0")
    print(f"published in {phase.publish_seconds:.2f} s (not measured)")
    phase.report()
    return phase


def _noop() -> None:
    """The bench's handle on bench/bare_actors.py's ``noop`` (only sent from here, never run)."""


async def full_stack(
    args: argparse.Namespace,
    settings: Settings,
    broker_url: str,
    admin_url: str,
    url: str,
    results: Results,
    *,
    lease: bool,
) -> Phase:
    definition = (
        Schedule(SCHEDULE, "probe", None, overlap="skip", lock_key="bench:{fail_times}")
        if lease
        else Schedule(SCHEDULE, "probe", None, overlap="allow")
    )
    phase = Phase("full stack, a lease per run" if lease else "full stack, overlap allow", args.messages)
    print(
        f"\n== {phase.name}: dramatiq app.actors, {phase.messages:,} probe runs"
        f" (overlap {definition.overlap}, lock key {definition.lock_key})"
    )
    broker = RabbitmqBroker(url=broker_url, confirm_delivery=True, middleware=[])
    dramatiq.actor(actor_name="probe", broker=broker)(_noop)  # queue "default", as actors/probe.py
    publisher = Publisher(broker, threads=settings.publish_threads)
    env = {
        **os.environ,
        "PUNCHCLOCK_DATABASE_URL": url,
        "PUNCHCLOCK_BROKER_URL": broker_url,
        "PUNCHCLOCK_SCHEDULES_MODULE": "",
        "PUNCHCLOCK_LOG_LEVEL": "WARNING",
    }
    pool = await create_pool(url, 4)
    try:
        await pool.execute(harness.EMPTY_TABLES)
        with worker("app.actors", args.threads, env, "lease" if lease else "allow") as dramatiq_worker:
            dramatiq_worker.wait_booted(broker_url, "default")
            dramatiq_worker.pause()
            schedule_id = await pool.fetchval(INSERT_SCHEDULE, SCHEDULE, definition.overlap, definition.lock_key)
            await pool.execute(
                INSERT_RUNS, schedule_id, SCHEDULE, definition.message_options(schedule_id), args.messages
            )
            started = time.perf_counter()
            published = await publish_unpublished(pool, publisher)
            phase.publish_seconds = time.perf_counter() - started
            await pool.close()  # its backends exit and flush their statistics before the baseline
            results.check(published == phase.messages, f"{published:,} runs published, expected {phase.messages:,}")
            await drain(phase, dramatiq_worker, admin_url, url, results)
    finally:
        await pool.close()
        publisher.close()
        broker.close()
    left = harness.queue_length(broker_url, "default")
    results.check(left == 0, f"{left:,} messages left in 'default' once the worker stopped, expected 0")
    print(f"published by publish_unpublished in {phase.publish_seconds:.2f} s (not measured)")
    phase.report()
    return phase


async def drain(phase: Phase, dramatiq_worker: Worker, admin_url: str, url: str, results: Results) -> None:
    """Continue the paused worker, wait for every run to finish, stop the worker; fill in the timings, the CPU
    and the database's counts over the drain."""
    admin = await asyncpg.connect(admin_url)
    poll = await asyncpg.connect(url)
    statements = 0  # the bench's own on the scratch database, taken out of the count

    async def fetch(query: str, *params: Any) -> list[asyncpg.Record]:
        nonlocal statements
        statements += 1
        return await poll.fetch(query, *params)

    async def counters() -> tuple[dict[int, float], ...]:
        backends = await fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", DATABASE
        )
        return cpu(dramatiq_worker.pids()), cpu(row["pid"] for row in backends), cpu(rabbitmq_pids())

    try:
        calls_before = dict(await fetch(FUNCTION_CALLS))
        before = await counters()
        transactions_before: int = await admin.fetchval(TRANSACTIONS, DATABASE)
        resumed_at, resumed = time.time(), time.perf_counter()
        dramatiq_worker.resume()
        finished = 0
        deadline = resumed + 60 + phase.messages / 50
        while finished < phase.messages and time.perf_counter() < deadline:
            await asyncio.sleep(FULL_POLL_S)
            finished = (await fetch(f"SELECT count(*) FROM runs WHERE {FINISHED}"))[0][0]
        after = await counters()
        states = dict(await fetch("SELECT state, count(*) FROM runs GROUP BY state"))
        last_finished = (await fetch("SELECT max(finished_at) FROM runs"))[0][0]
        await poll.close()
        dramatiq_worker.stop()
        await wait_no_backends(admin)  # every backend flushes its statistics when it exits
        transactions_after: int = await admin.fetchval(TRANSACTIONS, DATABASE)
    finally:
        await poll.close()
        await admin.close()
    results.check(
        states.get("succeeded") == phase.messages, f"runs by state {states}, expected {phase.messages:,} succeeded"
    )
    phase.seconds = (last_finished.timestamp() - resumed_at) if last_finished else time.perf_counter() - resumed
    phase.worker_cpu = cpu_delta(before[0], after[0])
    phase.postgres_cpu = cpu_delta(before[1], after[1]) if after[1] else None
    phase.rabbitmq_cpu = cpu_delta(before[2], after[2]) if after[2] else None
    phase.transactions = transactions_after - transactions_before - statements
    conn = await asyncpg.connect(url)
    try:
        calls_after = dict(await conn.fetch(FUNCTION_CALLS))
    finally:
        await conn.close()
    phase.calls = {name: calls - calls_before.get(name, 0) for name, calls in calls_after.items()}


# -- the worker process --------------------------------------------------------------------------------------------


class Worker:
    """``dramatiq MODULE --processes 1 --threads N``; its worker processes can be paused and continued."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def pids(self) -> list[int]:
        return [self.process.pid, *self.children()]

    def children(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent == self.process.pid:
                    found.append(int(entry.name))
        return found

    def wait_booted(self, broker_url: str, queue: str, timeout: float = 120) -> None:
        """Until a consumer is on ``queue`` and the worker's CPU time stands still (pool open, migrations done)."""
        deadline = time.monotonic() + timeout
        consuming = False
        last, still = -1.0, 0
        while still < 3:
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited with status {self.process.returncode}: see {self.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not boot within {timeout:.0f} s: see {self.log}")
            time.sleep(0.2)
            consuming = consuming or consumers(broker_url, queue) > 0
            seconds = sum(cpu(self.pids()).values())
            still = still + 1 if consuming and seconds - last < 0.015 else 0
            last = seconds

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for pid in self.children():
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        # SIGTERM to the main process only, as Ctrl-C or `docker stop` do: dramatiq forwards it once to its workers
        # (a second SIGTERM interrupts their graceful stop and leaves Dramatiq's event loop running). A stopped
        # worker process must be continued first, or it never handles it.
        self.resume()
        harness.stop_process(self.process)


@contextmanager
def worker(module: str, threads: int, env: dict[str, str], label: str) -> Iterator[Worker]:
    log = harness.ROOT / ".punchclock" / f"bench-pipeline-{label}.log"
    running = Worker(harness.start_process(harness.dramatiq_command(module, threads=threads), env, log), log)
    try:
        yield running
    finally:
        running.stop()


# -- CPU time from /proc -------------------------------------------------------------------------------------------


def cpu(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each process still alive (all its threads)."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15
    return seconds


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used in between by the processes alive at the end (one started in between counts from zero)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def rabbitmq_pids() -> list[int]:
    """The local RabbitMQ server's Erlang VM, if it runs on this machine (none in a remote container)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# -- RabbitMQ ------------------------------------------------------------------------------------------------------


def consumers(broker_url: str, queue: str) -> int:
    """Consumers on ``queue``; 0 while it does not exist yet."""
    with harness.amqp_channel(broker_url) as channel:
        try:
            count: int = channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
        return count


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


async def wait_no_backends(admin: asyncpg.Connection[Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
    while await admin.fetchval(query, DATABASE) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


# -- summary -------------------------------------------------------------------------------------------------------


def summary(results: Results) -> None:
    bare_phase, allow, lease = results.phases
    rows = [
        (f"bare Dramatiq, {bare_phase.messages:,} no-ops", f"{bare_phase.rate:,.0f} msg/s", ""),
        (f"{allow.name}", f"{allow.rate:,.0f} runs/s", ""),
        (
            "  full stack / bare",
            f"{allow.rate / bare_phase.rate:.0%}",
            harness.verdict(allow.rate / bare_phase.rate >= AIM_RATIO, f">= {AIM_RATIO:.0%}"),
        ),
        (f"{lease.name}", f"{lease.rate:,.0f} runs/s", f"{lease.rate / bare_phase.rate:.0%} of bare"),
        ("worker CPU per message: bare", bare_phase.per_message_ms(bare_phase.worker_cpu), ""),
        (
            "worker CPU per message: full stack (allow / lease)",
            allow.per_message_ms(allow.worker_cpu),
            f"/ {lease.per_message_ms(lease.worker_cpu)}",
        ),
        (
            "PostgreSQL CPU per run (allow / lease)",
            allow.per_message_ms(allow.postgres_cpu),
            f"/ {lease.per_message_ms(lease.postgres_cpu)}",
        ),
    ]
    for phase in (allow, lease):
        trips = phase.round_trips
        assert trips is not None
        rows.append(
            (
                f"database round trips per run ({phase.name.split(', ')[1]})",
                f"{trips:.2f}",
                harness.verdict(trips <= AIM_ROUND_TRIPS, f"<= {AIM_ROUND_TRIPS:.0f}")
                + f"; expected {EXPECTED_ROUND_TRIPS} from the code",
            )
        )
    rows += [
        ("issue 3, for reference: bare Dramatiq", f"~{ISSUE_BARE:,} msg/s", ""),
        (
            "issue 3, for reference: one asyncpg insert per message",
            f"~{ISSUE_ONE_INSERT:,} msg/s",
            f"{ISSUE_ONE_INSERT / ISSUE_BARE:.0%} of bare",
        ),
    ]
    harness.print_summary(rows)
    print(
        f"Round trips: transactions of the scratch database during the drain (pg_stat_database), less the bench's own"
        f" polls, per run. Expected {EXPECTED_ROUND_TRIPS}: start + finish, one statement each on the worker"
        " thread's own connection; plus the heartbeat's one statement a second for all of a process's running runs."
    )
    if results.failures:
        print("checks failed: " + "; ".join(results.failures))


if __name__ == "__main__":
    main()

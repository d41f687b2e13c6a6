"""1,000 LLM calls through one worker process against a loopback server that answers after 1 s (issue 4; a
script, not a test).

    python bench/llm_concurrency.py [--calls 1000] [--concurrency 200] [--threads 8] [--delay 1.0]

A ``FakeOpenAI(delay=1.0)`` (tests/fakes/openai_server.py: asyncio, the delay holds no other request back) plays the
provider. One worker, ``dramatiq app.actors bench.llm_workload --processes 1 --threads 8``, has the whole stack
plus the bench-only actor ``llm_fanout`` (bench/llm_workload.py), which makes ``--calls`` chat calls through the
real ``LLM`` client and the worker's shared ``httpx.AsyncClient``, fanned out with ``asyncio.gather`` under a
semaphore of ``--concurrency`` inside one message. The bench sends that one message (a plain message, not a run)
and times it from the send until the server has answered every call; it samples the server's requests in flight
every 50 ms.

Why one message: a worker thread blocks while its actor's coroutine runs (docs/design.md, "Traps in the
libraries underneath"), so one run per call gives ``--threads`` calls in flight per process; the fan-out has to
happen inside a run.

Aims (issue 4): >= 100 calls in flight, <= 15 s for 1,000 calls. Exit status 1 only when a check fails (a call
unanswered or failed). RabbitMQ: the bench's own vhost ``punchclock_bench_llm`` (created with ``rabbitmqctl`` when
missing), so no queue of the default vhost is touched; its queues are deleted at the end. PostgreSQL: a fresh
``punchclock_bench_llm`` (embedded in ``.punchclock/bench-pgdata`` unless ``PUNCHCLOCK_DATABASE_URL`` is set),
dropped at the end. Worker log: ``.punchclock/bench-llm-concurrency.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from app.settings import Settings

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/llm_concurrency.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from bench import harness  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

DATABASE = "punchclock_bench_llm"
VHOST = "punchclock_bench_llm"
ACTOR, QUEUE = "llm_fanout", "bench_llm"  # bench/llm_workload.py
DONE = re.compile(r"llm_fanout done ok=(\d+) failed=(\d+) elapsed=([\d.]+)(?: errors=(.*))?")
# The worker declares these in the bench's vhost too (app.actors' actors); deleted with the bench's own.
QUEUES = (QUEUE, "default", "clock", "notify")
MODEL = "bench-model"
LOG = harness.ROOT / ".punchclock" / "bench-llm-concurrency.log"
READY = b"Worker process is ready for action."
SAMPLE_S = 0.05
POLL_S = 0.01
AIM_IN_FLIGHT = 100
AIM_SECONDS = 15.0


@dataclass
class Outcome(harness.Checks):
    calls: int
    seconds: float | None = None  # send -> the server's last answer
    answered: int = 0
    first_request_s: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the send, in flight)
    max_in_flight: int = 0
    actor: tuple[int, int, float, str | None] | None = None  # ok, failed, elapsed, errors (the worker's own line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="LLM calls in the one message")
    parser.add_argument("--concurrency", type=int, default=200, help="the fan-out's semaphore")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (one process)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the server takes to answer each call")
    args = parser.parse_args()
    outcome = run(args, Settings.from_env())
    raise SystemExit(1 if outcome.failures else 0)


def run(args: argparse.Namespace, settings: Settings) -> Outcome:
    broker_url = harness.with_path(settings.broker_url, VHOST)
    harness.ensure_vhost(broker_url)
    admin_url = harness.admin_database_url(settings.database_url)
    url = harness.with_path(admin_url, DATABASE)
    print(
        f"broker {harness.redact(broker_url)}, database {DATABASE}; {args.calls:,} calls,"
        f" server delay {args.delay:g} s, fan-out concurrency {args.concurrency};"
        f" worker: --processes 1 --threads {args.threads}; {os.cpu_count()} CPUs"
    )
    outcome = Outcome(args.calls)
    harness.delete_queues(broker_url, QUEUES, vhost=VHOST)
    asyncio.run(harness.recreate_database(admin_url, DATABASE))
    try:
        with FakeOpenAI(delay=args.delay) as fake:
            env = {
                **os.environ,
                "PUNCHCLOCK_DATABASE_URL": url,
                "PUNCHCLOCK_BROKER_URL": broker_url,
                "PUNCHCLOCK_SCHEDULES_MODULE": "",
                "PUNCHCLOCK_LOG_LEVEL": "WARNING",
                "PUNCHCLOCK_LLM_BASE_URL": fake.base_url,
                "PUNCHCLOCK_LLM_MODEL": MODEL,
            }
            env.pop("PUNCHCLOCK_LLM_API_KEY", None)
            with worker(args.threads, env) as process:
                measure(args, broker_url, fake, process, outcome)
            check(args, fake, outcome)
    finally:
        harness.delete_queues(broker_url, QUEUES, vhost=VHOST)
        asyncio.run(harness.drop_database(admin_url, DATABASE))
    summary(args, outcome)
    return outcome


def measure(
    args: argparse.Namespace, broker_url: str, fake: FakeOpenAI, process: subprocess.Popen[bytes], outcome: Outcome
) -> None:
    """Send the one message; poll the server until every call is answered; sample its requests in flight."""
    broker = RabbitmqBroker(url=broker_url, confirm_delivery=True, middleware=[])
    try:
        actor = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker)(_llm_fanout)
        # The worst case (a fan-out of --threads) plus slack: past it something is broken, not slow.
        deadline = 60 + 1.5 * args.calls * args.delay / max(1, min(args.threads, args.concurrency))
        sent = time.perf_counter()
        actor.send(calls=args.calls, concurrency=args.concurrency)
        next_sample = sent
        while time.perf_counter() - sent < deadline:
            now = time.perf_counter()
            in_flight = fake.in_flight
            answered = len(fake.requests) - in_flight
            if outcome.first_request_s is None and (answered or in_flight):
                outcome.first_request_s = now - sent
            if now >= next_sample:
                outcome.samples.append((now - sent, in_flight))
                next_sample += SAMPLE_S
            if answered >= args.calls and in_flight == 0:
                outcome.seconds = now - sent
                break
            if process.poll() is not None:
                print(f"the worker exited with status {process.returncode}: see {LOG}")
                break
            time.sleep(POLL_S)
        outcome.answered = len(fake.requests) - fake.in_flight
        outcome.max_in_flight = fake.max_in_flight
        outcome.actor = wait_done_line(process, timeout=30)
    finally:
        broker.close()


def _llm_fanout(calls: int, concurrency: int) -> None:
    """The bench's handle on bench/llm_workload.py's ``llm_fanout`` (only sent from here, never run)."""


def wait_done_line(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, float, str | None] | None:
    """The actor's own count, from its log line: (ok, failed, elapsed, errors), or None if it never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = DONE.search(LOG.read_text(errors="replace"))
        if found:
            return int(found[1]), int(found[2]), float(found[3]), found[4]
        if process.poll() is not None:
            return None
        time.sleep(0.1)
    return None


def check(args: argparse.Namespace, fake: FakeOpenAI, outcome: Outcome) -> None:
    print("\n== checks")
    chats = [request for request in fake.requests if request.path.endswith("/chat/completions")]
    models = {str(request.body.get("model")) for request in chats if isinstance(request.body, dict)}
    outcome.check(
        len(chats) == args.calls == outcome.answered,
        f"{len(chats):,} chat requests answered by the server, expected {args.calls:,}",
    )
    outcome.check(models <= {MODEL}, f"models requested {sorted(models)}, expected [{MODEL!r}]")
    if outcome.actor is None:
        outcome.check(False, f"no 'llm_fanout done' line in the worker's log (see {LOG})")
    else:
        ok, failed, _, errors = outcome.actor
        outcome.check(
            ok == args.calls and failed == 0,
            f"the actor counted {ok:,} ok, {failed:,} failed" + (f" ({errors})" if errors else ""),
        )


def summary(args: argparse.Namespace, outcome: Outcome) -> None:
    print("\n== in flight, the highest sample of each second (sampled every 50 ms)")
    by_second: dict[int, int] = {}
    for at, in_flight in outcome.samples:
        by_second[int(at)] = max(by_second.get(int(at), 0), in_flight)
    print("  " + " ".join(f"{second}s:{count}" for second, count in sorted(by_second.items())))
    busy = [in_flight for _, in_flight in outcome.samples if in_flight]
    ideal = args.calls * args.delay / min(args.concurrency, args.calls)
    per_run = args.calls * args.delay / args.threads
    rows: list[tuple[str, str, str]] = []
    if outcome.seconds is not None:
        rows += [
            (
                f"wall time, send -> {args.calls:,} answered",
                f"{outcome.seconds:.2f} s",
                harness.verdict(outcome.seconds <= AIM_SECONDS, f"<= {AIM_SECONDS:.0f} s")
                + f"; floor {ideal:.1f} s = {args.calls:,} x {args.delay:g} s / {args.concurrency}",
            ),
            ("calls per second", f"{args.calls / outcome.seconds:.0f}", ""),
        ]
    else:
        rows.append((f"wall time, send -> {args.calls:,} answered", "not reached", harness.verdict(False)))
    rows += [
        (
            "max calls in flight (server)",
            f"{outcome.max_in_flight}",
            harness.verdict(outcome.max_in_flight >= AIM_IN_FLIGHT, f">= {AIM_IN_FLIGHT}")
            + f"; semaphore {args.concurrency}",
        ),
        (
            "calls in flight, mean of the busy samples",
            f"{sum(busy) / len(busy):.0f}" if busy else "n/a",
            f"{len(busy)} samples",
        ),
    ]
    if outcome.first_request_s is not None:
        rows.append(("send -> first request at the server", f"{outcome.first_request_s * 1000:.0f} ms", ""))
    if outcome.actor is not None:
        rows.append(("the actor's own elapsed (gather start -> end)", f"{outcome.actor[2]:.2f} s", ""))
    rows.append(
        (
            f"for contrast, one run per call (not run): {args.threads} threads",
            f"~{per_run:.0f} s",
            f"{args.calls:,} x {args.delay:g} s / {args.threads} in flight",
        )
    )
    harness.print_summary(rows)
    if outcome.failures:
        print("checks failed: " + "; ".join(outcome.failures))


# -- the worker process --------------------------------------------------------------------------------------------


@contextmanager
def worker(threads: int, env: dict[str, str], boot_timeout: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """``dramatiq app.actors bench.llm_workload --processes 1 --threads N``, once it says it is ready."""
    command = harness.dramatiq_command("app.actors", "bench.llm_workload", threads=threads)
    process = harness.start_process(command, env, LOG)
    try:
        deadline = time.monotonic() + boot_timeout
        while READY not in LOG.read_bytes():
            if process.poll() is not None:
                raise SystemExit(f"the worker exited with status {process.returncode}: see {LOG}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker was not ready within {boot_timeout:.0f} s: see {LOG}")
            time.sleep(0.1)
        yield process
    finally:
        harness.stop_process(process)


if __name__ == "__main__":
    main()

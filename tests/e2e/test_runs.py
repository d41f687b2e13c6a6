"""The worker side end to end: overlap, retries, timeouts, cancel, dependencies, backfill and notifications,
with ``dramatiq app.actors`` as a subprocess on the real RabbitMQ and PostgreSQL, driven by the CLI."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest

from tests import services
from tests.conftest import consumers, purge_queues
from tests.e2e.processes import Process, punchclock, wait_for, worker

pytestmark = pytest.mark.e2e
LOCK_TTL_SECONDS = 3


class Stack:
    """A database of its own and a running worker (lock TTL 3 s) for this module's tests."""

    def __init__(self, url: str, env: dict[str, str], log_dir: Path) -> None:
        self.url = url
        self.env = env
        self.log_dir = log_dir
        self.workers: list[Process] = []

    def start_worker(self, name: str = "worker", threads: int = 4) -> Process:
        process = worker(self.env, self.log_dir / f"{name}.log", threads=threads)
        self.workers.append(process)
        wait_for(lambda: "Worker process is ready" in process.output(), 60, f"{name} to boot")
        return process

    def cli(self, *args: str) -> str:
        result = punchclock(*args, env=self.env)
        assert result.returncode == 0, f"punchclock {' '.join(args)}: {result.stderr}"
        return result.stdout

    def trigger(self, name: str, *extra: str) -> int:
        before = self.query("SELECT coalesce(max(id), 0) AS id FROM runs")[0]["id"]
        self.cli("schedules", "trigger", name, *extra)
        return int(self.query("SELECT min(id) AS id FROM runs WHERE id > $1", before)[0]["id"])

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url)
            try:
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(go())

    def run(self, run_id: int) -> asyncpg.Record:
        return self.query("SELECT * FROM runs WHERE id = $1", run_id)[0]

    def wait_state(self, run_id: int, *states: str, timeout: float = 60) -> asyncpg.Record:
        return wait_for(
            lambda: (row := self.run(run_id))["state"] in states and row, timeout, f"run {run_id} to be {states}"
        )

    def logged(self, action: str, run_id: int) -> bool:
        """Whether a running worker has logged ``action`` for run ``run_id`` (``action=… run_id=…`` on a line)."""
        line = re.compile(rf"\baction={re.escape(action)}\b.*\brun_id={run_id}\b")
        return any(line.search(process.output()) for process in self.workers)

    @contextmanager
    def sole_worker(self, threads: int) -> Iterator[Process]:
        """Inside, one worker with ``threads`` threads is the only one consuming; after, a worker like the
        module's (4 threads) replaces it, so the tests that follow find the stack as they expect."""
        for process in self.workers:
            process.stop()
        self.workers.clear()
        sole = self.start_worker(f"sole-{threads}-thread", threads=threads)
        try:
            yield sole
        finally:
            sole.stop()
            self.workers.clear()
            self.start_worker(f"worker-after-sole-{threads}-thread")


@pytest.fixture(scope="module")
def stack(pg_admin_url: str, rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = asyncio.run(services.create_test_database(pg_admin_url))
    env = {
        "PUNCHCLOCK_DATABASE_URL": url,
        "PUNCHCLOCK_BROKER_URL": rabbitmq_url,
        "PUNCHCLOCK_SCHEDULES_MODULE": "",
        "PUNCHCLOCK_LOCK_TTL_SECONDS": str(LOCK_TTL_SECONDS),
    }
    purge_queues(rabbitmq_url)
    s = Stack(url, env, tmp_path_factory.mktemp("runs"))
    s.start_worker()
    yield s
    for process in s.workers:
        process.stop(signal.SIGKILL)
    purge_queues(rabbitmq_url)
    asyncio.run(services.drop_test_database(pg_admin_url, url))


def add(stack: Stack, name: str, *flags: str, args: dict[str, Any] | None = None) -> None:
    stack.cli(
        "schedules", "add", name, "--actor", "probe", "--cron", "0 0 1 1 *", "--args", json.dumps(args or {}), *flags
    )


def test_overlap_skip_records_the_blocking_run(stack: Stack) -> None:
    add(stack, "skip-3s", args={"seconds": 3})
    first = stack.trigger("skip-3s")
    stack.wait_state(first, "running")
    second = stack.trigger("skip-3s")
    skipped = stack.wait_state(second, "skipped")
    assert skipped["blocked_by"] == first
    assert str(first) in skipped["error"]
    assert stack.wait_state(first, "succeeded")["attempts"] == 1


def test_overlap_queue_runs_the_second_after_the_first_and_skips_a_third(stack: Stack) -> None:
    add(stack, "queue-3s", "--overlap", "queue", args={"seconds": 3})
    first = stack.trigger("queue-3s")
    stack.wait_state(first, "running")
    second = stack.trigger("queue-3s")
    wait_for(lambda: stack.run(second)["blocked_by"] == first, 30, "the second run to wait")
    third = stack.trigger("queue-3s")
    assert stack.wait_state(third, "skipped")["blocked_by"] == first
    done_first = stack.wait_state(first, "succeeded")
    done_second = stack.wait_state(second, "succeeded", timeout=60)
    assert done_second["started_at"] >= done_first["finished_at"]


def test_overlap_allow_runs_together(stack: Stack) -> None:
    add(stack, "allow-3s", "--overlap", "allow", args={"seconds": 3})
    first = stack.trigger("allow-3s")
    stack.wait_state(first, "running")
    second = stack.trigger("allow-3s")
    a, b = stack.wait_state(first, "succeeded"), stack.wait_state(second, "succeeded")
    assert b["started_at"] < a["finished_at"]


def test_schedules_sharing_a_lock_key_exclude_each_other(stack: Stack) -> None:
    # The key is a template over the run's arguments: both schedules probe the same "output", one lock.
    add(stack, "kb-nightly", "--lock-key", "reindex:{output}", args={"output": "docs", "seconds": 3})
    add(stack, "kb-hourly", "--lock-key", "reindex:{output}", args={"output": "docs", "seconds": 3})
    first = stack.trigger("kb-nightly")
    stack.wait_state(first, "running")
    other = stack.trigger("kb-hourly")
    assert stack.wait_state(other, "skipped")["blocked_by"] == first


def test_a_trigger_with_force_ignores_the_lock(stack: Stack) -> None:
    add(stack, "force-3s", args={"seconds": 3})
    first = stack.trigger("force-3s")
    stack.wait_state(first, "running")
    forced = stack.trigger("force-3s", "--force")
    assert stack.wait_state(forced, "succeeded")["started_at"] < stack.wait_state(first, "succeeded")["finished_at"]


def test_retries_record_every_attempt_and_their_backoff(stack: Stack) -> None:
    add(
        stack,
        "flaky",
        "--max-retries",
        "3",
        "--min-backoff",
        "100ms",
        "--max-backoff",
        "1s",
        args={"fail_times": 2, "output": "third time lucky"},
    )
    run = stack.wait_state(stack.trigger("flaky"), "succeeded")
    assert (run["attempts"], json.loads(run["output"])) == (3, "third time lucky")
    attempts = stack.query("SELECT * FROM run_attempts WHERE run_id = $1 ORDER BY attempt", run["id"])
    assert [a["state"] for a in attempts] == ["retrying", "retrying", "succeeded"]
    # Backoff before retry n is min_backoff * 2**n * random(1, 2), capped at max_backoff.
    assert 100 <= attempts[0]["retry_delay_ms"] <= 200
    assert 200 <= attempts[1]["retry_delay_ms"] <= 400
    assert "ProbeFailure" in attempts[0]["error"]


def test_a_permanent_error_fails_on_the_first_attempt(stack: Stack) -> None:
    add(stack, "broken", "--max-retries", "3", "--min-backoff", "100ms", args={"permanent": True, "fail_times": 1})
    run = stack.wait_state(stack.trigger("broken"), "failed")
    assert run["attempts"] == 1
    assert "PermanentError" in run["error"]


class Flaky429(BaseHTTPRequestHandler):
    """Answers 429 with Retry-After: 2 to the first request, 200 after."""

    hits: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        Flaky429.hits.append(time.monotonic())
        if len(Flaky429.hits) == 1:
            self.send_response(429)
            self.send_header("Retry-After", "2")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_http_429_waits_at_least_its_retry_after(stack: Stack) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky429)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/status"
        add(stack, "rate-limited", "--min-backoff", "100ms", "--max-backoff", "1s", args={"url": url})
        run = stack.wait_state(stack.trigger("rate-limited"), "succeeded")
    finally:
        server.shutdown()
        server.server_close()
    first, second = stack.query("SELECT * FROM run_attempts WHERE run_id = $1 ORDER BY attempt", run["id"])
    delay = timedelta(milliseconds=first["retry_delay_ms"])
    assert delay >= timedelta(seconds=2)  # Retry-After wins over the 1 s max_backoff
    assert "429" in first["error"]
    # The retry was sent with this delay the moment the failure was decided (Retries), which no column records:
    # finished_at is stamped after that (RunLifecycle records the end once the retry is enqueued), so
    # finished_at + delay may fall after the second start. started_at is before that moment, so started_at +
    # delay cannot: the second attempt starts no earlier than its message is due.
    assert second["started_at"] - first["started_at"] >= delay


def test_a_timeout_marks_the_run_timed_out_and_frees_the_thread(stack: Stack) -> None:
    single = stack.start_worker("single-thread", threads=1)
    try:
        add(stack, "too-slow", "--timeout", "1s", args={"seconds": 10})
        run = stack.wait_state(stack.trigger("too-slow"), "timed_out", timeout=30)
        assert run["attempts"] == 1 and "timed out after 1s" in run["error"]
        add(stack, "quick", args={"output": 1})
        assert stack.wait_state(stack.trigger("quick"), "succeeded", timeout=30)
    finally:
        single.stop(signal.SIGKILL)
        stack.workers.remove(single)


def test_cancel_a_running_run(stack: Stack) -> None:
    add(stack, "long", args={"seconds": 60})
    run_id = stack.trigger("long")
    stack.wait_state(run_id, "running")
    stack.cli("runs", "cancel", str(run_id))
    run = stack.wait_state(run_id, "cancelled", timeout=20)
    assert run["finished_at"] is not None


def test_dependencies_fire_in_order_with_upstream_outputs(stack: Stack) -> None:
    add(stack, "dep-a", args={"output": {"rows": 3}})
    stack.cli("schedules", "add", "dep-b", "--actor", "probe", "--after", "dep-a", "--args", '{"output": "b"}')
    stack.cli("schedules", "add", "dep-c", "--actor", "probe", "--after", "dep-b")
    a = stack.wait_state(stack.trigger("dep-a"), "succeeded")
    c = wait_for(
        lambda: stack.query("SELECT * FROM runs WHERE schedule_name = 'dep-c' AND state = 'succeeded'"),
        60,
        "dep-c to run",
    )[0]
    b = stack.query("SELECT * FROM runs WHERE schedule_name = 'dep-b'")[0]
    assert b["trigger"] == c["trigger"] == "dependency"
    assert b["scheduled_for"] == c["scheduled_for"] == a["scheduled_for"]
    assert json.loads(b["args"])["upstream"] == {"dep-a": {"rows": 3}}
    assert json.loads(c["args"])["upstream"] == {"dep-b": "b"}
    assert a["finished_at"] <= b["started_at"] and b["finished_at"] <= c["started_at"]


def test_a_failing_upstream_fires_nothing_downstream(stack: Stack) -> None:
    add(stack, "up-broken", args={"permanent": True, "fail_times": 1})
    stack.cli("schedules", "add", "down-1", "--actor", "probe", "--after", "up-broken")
    stack.cli("schedules", "add", "down-2", "--actor", "probe", "--after", "down-1")
    add(stack, "unrelated", args={"output": 1})
    with stack.sole_worker(threads=1):
        upstream = stack.trigger("up-broken")
        stack.wait_state(upstream, "failed")  # recorded before the follow-up that would fire dependents
        # One thread handles every message, each to the end of its after-hooks (the follow-up included) before
        # the next. A run triggered once the upstream is failed comes after it, so by its success any dependent
        # the failure fired would be in the database.
        stack.wait_state(stack.trigger("unrelated"), "succeeded")
    assert stack.query("SELECT * FROM runs WHERE schedule_name IN ('down-1', 'down-2')") == []


def test_backfill_runs_each_instant_in_order(stack: Stack) -> None:
    stack.cli("schedules", "add", "hourly", "--actor", "probe", "--cron", "0 * * * *", "--args", '{"output": 1}')
    stack.cli(
        "schedules", "backfill", "hourly", "--from", "2026-11-01T00:00:00+00:00", "--to", "2026-11-01T05:00:00+00:00"
    )
    runs = wait_for(
        lambda: (
            (rows := stack.query("SELECT * FROM runs WHERE schedule_name = 'hourly' ORDER BY scheduled_for"))
            and all(r["state"] == "succeeded" for r in rows)
            and len(rows) == 6
            and rows
        ),
        60,
        "six backfill runs to succeed",
    )
    assert [r["scheduled_for"].hour for r in runs] == [0, 1, 2, 3, 4, 5]
    assert {r["trigger"] for r in runs} == {"backfill"}
    starts = [r["started_at"] for r in runs]
    assert starts == sorted(starts)


class Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_final_failure_notifies_once_and_a_dead_webhook_does_not_make_it_worse(stack: Stack) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"webhook:http://127.0.0.1:{server.server_port}/hook"
        dead = "webhook:http://127.0.0.1:9/nobody-listens"
        add(
            stack,
            "alerting",
            "--max-retries",
            "2",
            "--min-backoff",
            "100ms",
            "--max-backoff",
            "200ms",
            "--notify",
            hook,
            "--notify",
            dead,
            args={"fail_times": 5},
        )
        run = stack.wait_state(stack.trigger("alerting"), "failed", timeout=60)
        notes = wait_for(
            lambda: (
                (rows := stack.query("SELECT * FROM notifications WHERE run_id = $1 ORDER BY id", run["id"]))
                and all(r["state"] != "pending" for r in rows)
                and rows
            ),
            90,
            "both notifications to settle",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert run["attempts"] == 3
    assert [n["state"] for n in notes] == ["sent", "failed"]
    assert notes[1]["error"] and "nobody-listens" not in notes[1]["error"]
    assert len(Receiver.bodies) == 1  # one message for the final failure, not one per attempt
    assert Receiver.bodies[0]["run_id"] == run["id"]
    assert stack.run(run["id"])["state"] == "failed"


def test_a_lease_left_by_a_killed_worker_expires(stack: Stack) -> None:
    add(stack, "crashy", args={"seconds": 30})
    victim = stack.start_worker("victim", threads=1)
    for process in stack.workers:  # only the victim may take the run
        if process is not victim:
            process.stop(signal.SIGKILL)
    stack.workers[:] = [victim]
    first = stack.trigger("crashy")
    stack.wait_state(first, "running")
    victim.stop(signal.SIGKILL)
    stack.workers.clear()
    # The crashed run's message is gone with its worker. RabbitMQ requeues a dead consumer's unacknowledged
    # message only once it notices the closed connection: purge after that, or the message comes back after the
    # purge and a new worker takes the run over (its heartbeat has expired), holding the lease again for 30 s.
    broker_url = stack.env["PUNCHCLOCK_BROKER_URL"]
    wait_for(lambda: consumers(broker_url) == 0, 30, "RabbitMQ to notice the killed worker")
    purge_queues(broker_url)
    stack.start_worker("after-crash")

    blocked = stack.trigger("crashy", "--args", '{"seconds": 0}')
    assert stack.wait_state(blocked, "skipped")["blocked_by"] == first  # the dead worker's lease still holds
    time.sleep(LOCK_TTL_SECONDS + 1)
    after = stack.trigger("crashy", "--args", '{"seconds": 0}')
    assert stack.wait_state(after, "succeeded")


def test_cancelled_runs_that_had_not_started_never_start(stack: Stack) -> None:
    # A run waiting for the lease (overlap queue), and a run waiting for its next attempt (retrying). The holder
    # runs long enough that the second schedule's CLI calls and first failure, on a slow machine, end well within
    # it: the waiting run must still be waiting when it is cancelled (3 s was once not enough).
    add(stack, "holder", "--overlap", "queue", args={"seconds": 20})
    first = stack.trigger("holder")
    stack.wait_state(first, "running")
    waiting = stack.trigger("holder")
    wait_for(lambda: stack.run(waiting)["blocked_by"] == first, 30, "the second run to wait for the lease")
    add(stack, "backing-off", "--min-backoff", "5s", "--max-backoff", "5s", args={"fail_times": 5})
    retrying = stack.trigger("backing-off")
    stack.wait_state(retrying, "retrying")

    # The retrying run first: its retry is due 5 s after its failure, and must find it cancelled.
    for run_id in (retrying, waiting):
        assert stack.cli("runs", "cancel", str(run_id)).endswith(": it will not start\n")
    # Its retry message arrives after the cancel, and the worker drops it.
    wait_for(lambda: stack.logged("run_redelivery_ignored", retrying), 60, f"run {retrying}'s retry to be dropped")
    # The waiting run has no message (its own was acknowledged when it queued): only the end of the lease's
    # holder sends it back to the outbox, in the transaction that frees the lease, and only if it still waits.
    # Once the holder has succeeded that is done, and nothing refers to the cancelled run any more.
    stack.wait_state(first, "succeeded")
    assert stack.query("SELECT * FROM run_locks WHERE waiting_run_id = $1", waiting) == []
    for run_id in (waiting, retrying):
        assert stack.run(run_id)["state"] == "cancelled"
    assert stack.run(waiting)["attempts"] == 0
    assert stack.run(retrying)["attempts"] == 1


class NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_token_in_a_failing_url_is_not_stored_with_the_error(stack: Stack) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # httpx names the URL in its error ("Client error '404 Not Found' for url '...'"): the token must go.
        url = f"http://127.0.0.1:{server.server_port}/hook?access_token=s3cr3t-t0ken-value"
        add(stack, "leaky", args={"url": url})
        run = stack.wait_state(stack.trigger("leaky"), "failed")
    finally:
        server.shutdown()
        server.server_close()
    assert "404 Not Found" in run["error"] and "access_token=" in run["error"]
    assert "s3cr3t-t0ken-value" not in run["error"]
    attempts = stack.query("SELECT error FROM run_attempts WHERE run_id = $1", run["id"])
    assert all("s3cr3t-t0ken-value" not in a["error"] for a in attempts)

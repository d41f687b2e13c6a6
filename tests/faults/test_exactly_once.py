"""Exactly once under faults: a broker blip, a database restart, dead workers and clocks, forged messages.

Real ``dramatiq app.actors`` workers and ``periodiq app.actors`` clocks run against a private RabbitMQ node and a
private PostgreSQL server that each test stops, kills and restarts. Every case ends with
:func:`tests.faults.cluster.assert_exactly_once`: no lost run, no double execution (as the actors recorded
them), every run and attempt in a final state within the bound the test states. Each test prints a line of the
fault table (``FAULT|case|runs|lost|double|recovery s``) that the closing notes quote.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pika
import pytest

from tests.e2e.processes import wait_for
from tests.faults.cluster import Cluster, assert_exactly_once, wait_log
from tests.faults.nodes import BrokerNode, PostgresNode

pytestmark = pytest.mark.faults


@pytest.fixture
def cluster(punchclock_env: dict[str, str], record_path: Path, tmp_path: Path) -> Iterator[Cluster]:
    env = {
        **punchclock_env,
        "PUNCHCLOCK_LOCK_TTL_SECONDS": "3",  # a dead worker's attempt is taken over 3 s after its last beat
        "PUNCHCLOCK_REPUBLISH_AFTER_SECONDS": "20",
    }
    c = Cluster(env, tmp_path, record_path)
    yield c
    c.stop_all()


def report(case: str, cluster: Cluster, recovery: float, run_ids: list[int] | None = None) -> None:
    verdict = assert_exactly_once(cluster, run_ids)
    print(f"\nFAULT|{case}|{verdict.runs}|{len(verdict.lost)}|{len(verdict.double)}|{recovery:.1f}")


@pytest.mark.parametrize("outage", [2, 30])
def test_a_broker_outage_runs_nothing_twice_and_loses_nothing(
    cluster: Cluster, broker: BrokerNode, outage: int
) -> None:
    """Runs queued, running (overlap allow, skip, a shared lock key) and retrying while RabbitMQ goes away."""
    cluster.add("allow", "--overlap", "allow", seconds=20)
    cluster.add("skip", seconds=20)
    cluster.add("keyed", "--lock-key", "k40", seconds=20)
    cluster.add("flaky", "--min-backoff", "10s", "--max-backoff", "10s", fail_times=1)
    cluster.add("quick", "--overlap", "allow", seconds=0.5)
    cluster.worker(threads=5)
    running = [*cluster.trigger("allow", 2), *cluster.trigger("skip"), *cluster.trigger("keyed")]
    cluster.wait_states(running, ("running",), 60, "the long runs to start")
    skipped = cluster.trigger("skip")  # its lease is held
    cluster.wait_states(skipped, ("skipped",), 60, "a second run of the same lease to be skipped")
    retrying = cluster.trigger("flaky")
    cluster.wait_states(retrying, ("retrying",), 60, "the flaky run to wait for its retry")
    queued = cluster.trigger("quick", 3)  # one thread left for them: queued, prefetched or running
    assert set(cluster.states(running).values()) == {"running"}, "the long runs must span the outage's start"

    broker.stop_app()
    time.sleep(outage)  # the outage itself: what is measured is what happens after it
    broker.start_app()
    recovery = cluster.wait_final(timeout=120)

    runs = [*running, *retrying, *queued, *skipped]
    states = cluster.states(runs)
    assert [states[i] for i in running + retrying + queued] == ["succeeded"] * 8, states
    assert states[skipped[0]] == "skipped"
    # The fault really happened: RabbitMQ redelivered what was in flight, and the start check absorbed it — a
    # run still running after 2 s is a live duplicate; after 30 s the long runs are over when it comes back.
    expected = "run_duplicate_busy" if outage < 10 else "run_redelivery_ignored"
    assert expected in cluster.logs_of_all()
    report(f"broker stopped {outage} s (queued, running, retrying)", cluster, recovery)


def test_a_database_restart_records_every_start_and_end(cluster: Cluster, postgres: PostgresNode) -> None:
    """Runs start, run and finish while PostgreSQL is down for 12 s; nothing is acknowledged unrecorded."""
    # An attempt outlives its worker's silence by the TTL: longer than the outage here, as in production (5 min).
    cluster.env["PUNCHCLOCK_LOCK_TTL_SECONDS"] = "30"
    cluster.add("work", "--overlap", "allow", seconds=4)
    cluster.worker(threads=4)
    cluster.clock()
    runs = cluster.trigger("work", 8)
    wait_for(lambda: "running" in cluster.states(runs).values(), 60, "runs to start")

    postgres.stop()
    time.sleep(12)
    postgres.start()
    recovery = cluster.wait_final(runs, timeout=120)

    assert set(cluster.states(runs).values()) == {"succeeded"}
    attempts = cluster.query("SELECT state, count(*) AS n FROM run_attempts GROUP BY state")
    assert {a["state"]: a["n"] for a in attempts} == {"succeeded": 8}
    logs = cluster.logs_of_all()
    assert "database_outage_wait" in logs and "database_outage_over" in logs
    assert "run_finish_unrecorded" not in logs
    report("PostgreSQL stopped 12 s (runs starting, running, finishing)", cluster, recovery)


def seconds_into_minute() -> float:
    now = datetime.now(UTC)
    return now.second + now.microsecond / 1e6


def test_clocks_survive_a_broker_outage_across_a_minute_boundary(cluster: Cluster, broker: BrokerNode) -> None:
    """Two clocks; RabbitMQ down across a minute boundary: both clocks live on, and the misfire policy catches
    the instant up once the broker is back, each instant once."""
    cluster.add("minutely", "--misfire", "all", cron="* * * * *")
    cluster.worker(threads=2)
    clocks = [cluster.clock("clock-1"), cluster.clock("clock-2")]
    wait_for(
        lambda: cluster.query("SELECT 1 FROM runs WHERE state = 'succeeded'"), 150, "a first minute to run", interval=1
    )
    wait_for(lambda: seconds_into_minute() > 45, 60, "the end of a minute")
    broker.stop_app()
    for process in clocks:  # each clock tried to send the tick at the boundary, and is still there
        wait_log(process.output, "tick_not_sent", 60)
    assert all(process.popen.poll() is None for process in clocks)
    broker.start_app()
    down_at = datetime.now(UTC).replace(second=0, microsecond=0)

    def caught_up() -> bool:
        rows = cluster.query(
            "SELECT scheduled_for FROM runs WHERE state = 'succeeded' AND scheduled_for >= $1", down_at
        )
        return len(rows) >= 2  # the minute lost to the outage and the next one

    started = time.monotonic()
    wait_for(caught_up, 150, "the missed minute and the next to run", interval=1)
    recovery = time.monotonic() - started
    cluster.wait_final(timeout=60)
    instants = [r["scheduled_for"] for r in cluster.query("SELECT scheduled_for FROM runs ORDER BY scheduled_for")]
    assert len(instants) == len(set(instants)), "an instant fired twice"
    minutes = [(b - a).total_seconds() for a, b in itertools.pairwise(instants)]
    assert set(minutes) == {60.0}, f"an instant is missing: {instants}"
    assert all(process.popen.poll() is None for process in clocks)
    report("two clocks, broker down across a minute boundary", cluster, recovery)


def test_a_worker_killed_mid_run_and_mid_finish(cluster: Cluster) -> None:
    """SIGKILL a worker while runs are running, then again while short runs keep finishing."""
    cluster.add("long", "--overlap", "allow", seconds=5)
    cluster.add("short", "--overlap", "allow", seconds=0.2)
    first = cluster.worker("worker-1", threads=4)
    long_runs = cluster.trigger("long", 4)
    cluster.wait_states(long_runs, ("running",), 60, "the long runs to start")
    cluster.kill(first)
    second = cluster.worker("worker-2", threads=4)
    short_runs = cluster.trigger("short", 30)
    wait_for(
        lambda: len([s for s in cluster.states(short_runs).values() if s == "succeeded"]) >= 8,
        60,
        "some short runs to finish",
        interval=0.05,
    )
    cluster.kill(second)  # mid-stream: some runs between their actor's end and their recorded end
    cluster.worker("worker-3", threads=4)
    recovery = cluster.wait_final(timeout=120)
    assert set(cluster.states(long_runs + short_runs).values()) == {"succeeded"}
    lost = cluster.query("SELECT count(*) AS n FROM run_attempts WHERE state = 'lost'")[0]["n"]
    assert lost >= 4  # the four long runs' first attempts, at least
    report("worker SIGKILL mid-run and mid-finish", cluster, recovery)


def test_a_worker_and_a_clock_killed_mid_tick(cluster: Cluster) -> None:
    """300 schedules due at one minute; the worker running the tick and the clock are killed as it fans out."""
    cluster.cli("schedules", "list")  # migrated
    cluster.query(
        "INSERT INTO schedules (name, actor, cron, args, overlap, next_fire_at)"
        " SELECT 'bulk-' || i, 'probe', '* * * * *', jsonb_build_object('record', $1::text), 'allow',"
        "        date_trunc('minute', now()) + interval '1 minute'"
        " FROM generate_series(1, 300) AS i",
        str(cluster.record),
    )
    worker = cluster.worker("worker-1", threads=8)
    clock = cluster.clock("clock-1")
    wait_log(worker.output, "schedule_fired", 90)
    cluster.kill(worker)
    cluster.kill(clock)
    instant = cluster.query("SELECT min(scheduled_for) AS t FROM runs")[0]["t"]
    cluster.query("UPDATE schedules SET paused = true")  # only the instant that was being fired matters
    started = time.monotonic()
    cluster.worker("worker-2", threads=8)
    cluster.clock("clock-2")
    wait_for(
        lambda: cluster.query("SELECT count(*) AS n FROM runs WHERE scheduled_for = $1", instant)[0]["n"] == 300,
        120,
        "every schedule's run of the instant",
        interval=1,
    )
    cluster.wait_final(timeout=120)
    recovery = time.monotonic() - started
    rows = cluster.query("SELECT state, count(*) AS n FROM runs WHERE scheduled_for = $1 GROUP BY state", instant)
    assert {r["state"]: r["n"] for r in rows} == {"succeeded": 300}
    report("worker and clock SIGKILL mid-tick (300 due)", cluster, recovery)


def publish_raw(url: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()  # the worker declared the queue as Dramatiq does
        channel.basic_publish("", "default", body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def dramatiq_message(run_id: object, **options: object) -> bytes:
    return json.dumps(
        {
            "queue_name": "default",
            "actor_name": options.pop("actor", "probe"),
            "args": [],
            "kwargs": options.pop("kwargs", {}),
            "options": {"run_id": run_id, **options},
            "message_id": f"forged-{time.monotonic_ns()}",
            "message_timestamp": int(time.time() * 1000),
        }
    ).encode()


def test_malformed_and_forged_messages_run_nothing_and_lose_nothing(cluster: Cluster, broker: BrokerNode) -> None:
    cluster.add("target", seconds=0)
    worker = cluster.worker(threads=2)
    [done] = cluster.trigger("target")
    cluster.wait_states([done], ("succeeded",), 60, "a run to succeed")
    pending = cluster.query(
        "INSERT INTO runs (schedule_id, schedule_name, actor, args, scheduled_for, trigger, state)"
        " SELECT id, name, actor, args, now(), 'manual', 'enqueued' FROM schedules RETURNING id"
    )[0]["id"]
    executions_before = len(cluster.executions())
    for body in (
        b"this is not json",
        dramatiq_message(None, actor="no_such_actor"),
        dramatiq_message(999_999, kwargs={"record": str(cluster.record)}),  # no such run
        dramatiq_message(done, overlap="banana", kwargs={"record": str(cluster.record)}),  # over, bad options
        dramatiq_message(pending, overlap="banana", kwargs={"record": str(cluster.record)}),  # bad options
        dramatiq_message("1; DROP TABLE runs", kwargs={"record": str(cluster.record)}),
        dramatiq_message(999_998, kwargs={"output": "x" * 10_000_000}),  # 10 MB
    ):
        publish_raw(broker.url, body)
    wait_log(worker.output, "run_start_refused", 60)
    cluster.wait_states([pending], ("failed",), 60, "the run with broken options to fail saying why")
    [after] = cluster.trigger("target")  # the worker is still up and serving
    cluster.wait_states([after], ("succeeded",), 60, "a run after the forged messages to succeed")
    assert len(cluster.executions()) == executions_before + 1
    assert cluster.states([done]) == {done: "succeeded"}
    error = cluster.query("SELECT error FROM runs WHERE id = $1", pending)[0]["error"]
    assert "the start check failed" in error and "banana" in error
    assert cluster.query("SELECT count(*) AS n FROM runs")[0]["n"] == 3
    assert worker.popen.poll() is None
    longest = max(len(line) for line in worker.output().splitlines())
    assert longest < 100_000, f"a log line of {longest} characters"
    report("malformed and forged messages", cluster, 0.0, [done, pending, after])


def test_a_cancel_of_a_run_whose_worker_died_finishes_it(cluster: Cluster) -> None:
    cluster.add("orphan", seconds=60)
    worker = cluster.worker(threads=1)
    [run] = cluster.trigger("orphan")
    cluster.wait_states([run], ("running",), 60, "the run to start")
    cluster.kill(worker)
    wait_for(
        lambda: cluster.query("SELECT 1 FROM runs WHERE id = $1 AND alive_until < now()", run),
        30,
        "its heartbeat to expire",
    )
    cluster.cli("runs", "cancel", str(run))
    row = cluster.query("SELECT state, error FROM runs WHERE id = $1", run)[0]
    assert row["state"] == "cancelled" and "stopped heartbeating" in row["error"]
    assert cluster.query("SELECT state FROM run_attempts WHERE run_id = $1", run)[0]["state"] == "cancelled"
    report("cancel of a run whose worker died", cluster, 0.0, [run])

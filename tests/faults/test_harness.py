"""The fault tier's harness, tested before anything relies on it: private nodes really go down (a client is
refused), come back with what they were trusted with, and the execution records catch what they exist to catch.
A harness that cannot fail proves nothing: the readers are shown flagging a hand-written double execution and
refusing a record they cannot read, not only passing clean ones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pika
import pytest

from tests.e2e.processes import punchclock, wait_for, worker
from tests.faults.conftest import FaultNodes
from tests.faults.executions import Execution, parse, read_executions
from tests.faults.nodes import (
    CONNECT_ERRORS,
    BrokerNode,
    PostgresNode,
    epmd_names,
    live_group_members,
    port_accepts,
    reap_orphans,
    wait_until,
)
from tests.services import ROOT

pytestmark = pytest.mark.faults
QUEUE = "harness"


# --- RabbitMQ ------------------------------------------------------------------------------------------------


def publish(url: str, *bodies: bytes) -> None:
    """Persistent messages on a durable queue, each confirmed by the broker (so on disk, or in a queue the broker
    promised to keep)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True)
        for body in bodies:
            channel.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


def drain(url: str) -> list[bytes]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    bodies: list[bytes] = []
    try:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(QUEUE, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def refused(url: str) -> bool:
    """A new AMQP connection fails (fast: the port is closed, or the broker does not answer within a second)."""
    try:
        pika.BlockingConnection(pika.URLParameters(f"{url}?connection_attempts=1&socket_timeout=1&stack_timeout=2"))
    except CONNECT_ERRORS:
        return True
    return False


def test_broker_stopped_refuses_connections_and_restarts_with_its_durable_messages(broker: BrokerNode) -> None:
    publish(broker.url, b"one", b"two")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    stopped = broker.stop()
    assert not broker.running and not port_accepts(broker.port)
    assert refused(broker.url)
    with pytest.raises(pika.exceptions.AMQPError):  # a client connected across the stop lost its connection
        connection.channel()
    started = broker.start()
    assert drain(broker.url) == [b"one", b"two"]
    print(f"broker stop {stopped:.2f}s, start {started:.2f}s")


def test_broker_killed_restarts_with_its_confirmed_messages(broker: BrokerNode) -> None:
    publish(broker.url, b"confirmed")
    assert broker.process is not None
    pid = broker.process.pid
    killed = broker.kill()
    assert not broker.running and refused(broker.url)
    assert live_group_members(pid) == []  # the whole group is gone: no beam.smp left behind
    assert broker.name.split("@")[0] not in epmd_names()
    started = broker.start()
    assert drain(broker.url) == [b"confirmed"]
    print(f"broker kill {killed:.3f}s, start after a kill {started:.2f}s")


def test_broker_app_stop_pause_and_reset(broker: BrokerNode) -> None:
    publish(broker.url, b"kept")
    stop_app = broker.stop_app()
    assert broker.running and refused(broker.url)
    start_app = broker.start_app()
    broker.pause()  # the port still takes TCP connections, the broker answers nothing
    assert port_accepts(broker.port) and refused(broker.url)
    broker.resume()
    assert drain(broker.url) == [b"kept"]
    publish(broker.url, b"gone")
    reset = broker.reset()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        drain(broker.url)
    print(f"broker stop_app {stop_app:.2f}s, start_app {start_app:.2f}s, reset {reset:.2f}s")


def test_broker_node_is_private(broker: BrokerNode) -> None:
    assert broker.port != 5672 and broker.name.startswith("pcfault-")
    assert broker.ctl("status").returncode == 0, "rabbitmqctl -n NODE reaches the node (the cookie is shared)"
    machine = port_accepts(5672)
    broker.stop_app()
    assert port_accepts(5672) == machine, "the machine's RabbitMQ is untouched"


# --- PostgreSQL ----------------------------------------------------------------------------------------------


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=2)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def unreachable(url: str) -> bool:
    try:
        query(url, "SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return True
    return False


def test_postgres_stopped_refuses_connections_and_restarts_with_its_data(postgres: PostgresNode) -> None:
    url = postgres.create_database()
    query(url, "INSERT INTO schedules (name, actor, cron) VALUES ('kept', 'probe', '0 2 * * *')")
    stopped = postgres.stop("fast")
    assert not postgres.running and unreachable(url)
    started = postgres.start()
    assert [row["name"] for row in query(url, "SELECT name FROM schedules")] == ["kept"]
    print(f"postgres stop {stopped:.3f}s, start {started:.3f}s")


def test_postgres_killed_recovers_committed_data_and_loses_the_rest(postgres: PostgresNode) -> None:
    url = postgres.create_database()
    query(url, "CREATE TABLE facts (fact text)")
    query(url, "INSERT INTO facts VALUES ('committed')")

    async def kill_with_a_transaction_open() -> float:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("BEGIN; INSERT INTO facts VALUES ('uncommitted')")
            return postgres.kill()
        finally:
            conn.terminate()

    assert postgres.process is not None
    pid = postgres.process.pid
    killed = asyncio.run(kill_with_a_transaction_open())
    assert live_group_members(pid) == []  # postmaster and backends alike
    assert unreachable(url)
    started = postgres.start()
    assert "database system was not properly shut down; automatic recovery in progress" in postgres.log_text()
    assert [row["fact"] for row in query(url, "SELECT fact FROM facts")] == ["committed"]
    print(f"postgres kill {killed:.3f}s, start with crash recovery {started:.3f}s")


def test_postgres_paused_hangs_then_resumes(postgres: PostgresNode) -> None:
    postgres.pause()
    assert port_accepts(postgres.port) and unreachable(postgres.url())
    postgres.resume()
    assert query(postgres.url(), "SELECT 1 AS one")[0]["one"] == 1


def test_postgres_node_is_private(postgres: PostgresNode) -> None:
    assert postgres.port != 5432
    version = query(postgres.url(), "SELECT current_setting('server_version_num')::int AS v")[0]["v"]
    assert version >= 160000
    extensions = query(postgres.url(), "SELECT name FROM pg_available_extensions WHERE name = 'vector'")
    assert extensions, "pgvector comes with the pgserver binaries"
    machine = port_accepts(5432)
    postgres.stop("immediate")
    assert port_accepts(5432) == machine, "the machine's PostgreSQL is untouched"


def test_fault_nodes_start_extra_nodes_with_their_own_settings(fault_nodes: FaultNodes) -> None:
    node = fault_nodes.postgres(settings={"idle_session_timeout": "1s"})
    assert query(node.url(), "SELECT current_setting('idle_session_timeout') AS t")[0]["t"] == "1s"


def test_reap_orphans_kills_the_nodes_of_a_session_that_died() -> None:
    """A pytest that ends by ``os._exit`` (pytest-timeout's thread method) runs no finalizer: its servers live on
    until the next fault session reaps them."""
    code = (
        "import os; from tests.faults.nodes import PostgresNode\n"
        "node = PostgresNode(); node.start(); print(node.root, node.process.pid, flush=True); os._exit(0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    root, pid = Path(result.stdout.split()[0]), int(result.stdout.split()[1])
    assert live_group_members(pid), "the server outlived its session"
    assert any(root.name in killed for killed in reap_orphans())
    wait_until(lambda: not live_group_members(pid), 10, "the orphan to die")
    assert not root.exists()


# --- execution records ---------------------------------------------------------------------------------------


def lines(*events: tuple[str, Any, int, int, int, float]) -> list[str]:
    return [
        json.dumps({"event": e, "run_id": r, "attempt": a, "pid": p, "thread": t, "time": at})
        for e, r, a, p, t, at in events
    ]


def test_executions_pass_a_clean_record_with_a_retry() -> None:
    executions = parse(
        lines(
            ("start", 1, 1, 100, 1, 10.0),
            ("start", 2, 1, 100, 2, 10.5),  # another run on another thread, at the same time: fine
            ("end", 1, 1, 100, 1, 11.0),
            ("end", 2, 1, 100, 2, 11.5),
            ("start", 1, 2, 200, 7, 12.0),  # run 1's retry, in another process
            ("end", 1, 2, 200, 7, 13.0),
        )
    )
    assert executions.counts() == {1: 2, 2: 1}
    assert executions.attempts_executed_more_than_once() == {}
    assert executions.overlapping() == []
    assert executions.unfinished() == []
    assert list(executions.runs_executed_more_than_once()) == [1]  # the retry: strict tests without retries see it


def test_executions_flag_a_double_execution_and_an_overlap() -> None:
    executions = parse(
        lines(
            ("start", 7, 1, 100, 1, 10.0),
            ("start", 7, 1, 200, 1, 10.5),  # redelivered while the first still runs
            ("end", 7, 1, 100, 1, 11.0),
            ("end", 7, 1, 200, 1, 11.5),
            ("start", 8, 1, 100, 1, 20.0),
            ("end", 8, 1, 100, 1, 21.0),
        )
    )
    assert list(executions.attempts_executed_more_than_once()) == [(7, 1)]
    assert list(executions.runs_executed_more_than_once()) == [7]
    [(first, second)] = executions.overlapping()
    assert (first.pid, second.pid) == (100, 200)


def test_executions_an_unfinished_execution_overlaps_unless_its_process_was_killed() -> None:
    executions = parse(
        lines(
            ("start", 3, 1, 100, 1, 10.0),  # its worker was SIGKILLed at 12.0: no end line
            ("start", 3, 1, 200, 1, 15.0),  # the redelivery
            ("end", 3, 1, 200, 1, 16.0),
        )
    )
    [unfinished] = executions.unfinished()
    assert unfinished == Execution(run_id=3, attempt=1, pid=100, thread=1, started=10.0, ended=None)
    assert len(executions.overlapping()) == 1
    assert executions.overlapping(killed={100: 12.0}) == []
    assert len(executions.overlapping(killed={100: 15.5})) == 1  # killed only after the redelivery started


def test_executions_reject_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no start"):
        parse(lines(("end", 1, 1, 100, 1, 1.0)))
    with pytest.raises(ValueError, match="not an execution record"):
        parse(['{"event": "start", "run_id": 1, "attem'])
    assert len(read_executions(tmp_path / "never-written.jsonl")) == 0


def test_probe_records_from_concurrent_processes_never_interleave(record_path: Path) -> None:
    """The probe's own writer, from four processes at once (each imports the actor afresh, as a worker does)."""
    code = (
        "import sys; from actors.probe import probe\n"
        "for _ in range(200): probe.fn(record=sys.argv[1], output='x' * 300)\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code, str(record_path)], cwd=ROOT) for _ in range(4)]
    assert [process.wait(60) for process in processes] == [0, 0, 0, 0]
    executions = read_executions(record_path)
    assert len(executions) == 800 and executions.unfinished() == []
    assert {execution.run_id for execution in executions} == {None}  # no message: called outside a worker
    assert len({execution.pid for execution in executions}) == 4


def test_a_probe_run_through_a_worker_records_each_attempt(
    broker: BrokerNode, postgres: PostgresNode, punchclock_env: dict[str, str], record_path: Path, tmp_path: Path
) -> None:
    """The whole harness at once: the CLI and a real worker on the private nodes, the probe failing once."""
    args = json.dumps({"fail_times": 1, "record": str(record_path)})
    add = ["schedules", "add", "recorded", "--actor", "probe", "--cron", "0 0 1 1 *", "--args", args]
    for command in ([*add, "--min-backoff", "1s", "--max-backoff", "1s"], ["schedules", "trigger", "recorded"]):
        result = punchclock(*command, env=punchclock_env)
        assert result.returncode == 0, result.stderr
    url = punchclock_env["PUNCHCLOCK_DATABASE_URL"]

    def succeeded() -> asyncpg.Record | None:
        [run] = query(url, "SELECT id, state, attempts FROM runs")
        return run if run["state"] == "succeeded" else None

    process = worker(punchclock_env, tmp_path / "worker.log")
    try:
        run = wait_for(succeeded, 60, "the run to succeed")
    finally:
        process.stop(signal.SIGKILL)  # SIGTERM to the group: two for the worker process, which then hangs 30 s
    executions = read_executions(record_path)
    assert [(e.run_id, e.attempt) for e in executions] == [(run["id"], 1), (run["id"], 2)]
    assert executions.attempts_executed_more_than_once() == {} and executions.overlapping() == []
    assert run["attempts"] == 2 and all(e.pid != os.getpid() for e in executions)
    assert executions.items[0].ended is not None and executions.items[0].ended <= executions.items[1].started

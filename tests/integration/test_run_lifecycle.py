"""RunLifecycle on Dramatiq's StubBroker with an in-process Worker and the real PostgreSQL: what a message may
and may not make run. The broker is beside the point here (tests/faults drives the real RabbitMQ); each actor
execution is recorded from inside the actor, so a second execution is caught whatever the run row says."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, TimeLimit

from app.middleware.database import DatabasePool
from app.middleware.heartbeat import RunHeartbeat
from app.middleware.retries import Retries
from app.middleware.run_lifecycle import RunLifecycle
from app.publisher import run_message
from tests.e2e.processes import query, wait_for

LOCK_TTL = timedelta(seconds=3)


class Stack:
    def __init__(self, url: str) -> None:
        self.url = url
        self.executions: list[tuple[int | None, int | None]] = []  # (run id, attempt) per execution
        self.release = threading.Event()
        self.actions: list[str] = []  # the `action` of every log record of RunLifecycle
        self._handler = _ActionRecorder(self.actions)
        self._logger = logging.getLogger("app.middleware.run_lifecycle")
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)
        database = DatabasePool(lambda: url, 3)
        heartbeat = RunHeartbeat(database, lock_ttl=LOCK_TTL, interval=timedelta(milliseconds=200))

        async def no_notifications(*args: Any) -> list[int]:
            return []

        async def nothing_to_publish(pool: Any) -> int:
            return 0

        lifecycle = RunLifecycle(
            database,
            heartbeat,
            publish_pending=nothing_to_publish,
            lock_ttl=LOCK_TTL,
            create_notifications=no_notifications,
            send_notification=lambda notification_id: None,
        )
        self.broker = StubBroker(
            middleware=[AsyncIO(), database, lifecycle, heartbeat, Retries(), TimeLimit(), CurrentMessage()]
        )
        self.broker.emit_after("process_boot")

        def recorder(wait: bool = False, result: Any = "done") -> Any:
            message = CurrentMessage.get_current_message()
            assert message is not None
            self.executions.append((message.options.get("run_id"), message.options.get("attempt")))
            if wait:
                self.release.wait(30)
            return result

        dramatiq.actor(recorder, actor_name="recorder", broker=self.broker, max_retries=0)
        self.worker = dramatiq.Worker(self.broker, worker_threads=2, worker_timeout=50)
        self.worker.start()

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return query(self.url, sql, *args)

    def new_run(self, state: str = "enqueued") -> int:
        rows = self.query(
            "INSERT INTO runs (actor, scheduled_for, trigger, state, finished_at)"
            " VALUES ('recorder', now(), 'manual', $1, CASE WHEN $1 IN ('succeeded', 'failed') THEN now() END)"
            " RETURNING id",
            state,
        )
        return int(rows[0]["id"])

    def send(self, run_id: Any, **options: Any) -> None:
        run = {"id": run_id, "actor": "recorder", "args": options.pop("args", {}), "options": options}
        self.broker.enqueue(run_message(run, "default"))

    def run(self, run_id: int) -> asyncpg.Record:
        return self.query("SELECT * FROM runs WHERE id = $1", run_id)[0]

    def join(self) -> None:
        self.broker.join("default", fail_fast=False, timeout=30_000)
        self.worker.join()


class _ActionRecorder(logging.Handler):
    def __init__(self, actions: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.actions = actions

    def emit(self, record: logging.LogRecord) -> None:
        self.actions.append(getattr(record, "action", ""))


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    s = Stack(database_url)
    yield s
    s.release.set()
    s.worker.stop()
    s.broker.close()
    s._logger.removeHandler(s._handler)
    s._logger.setLevel(s._level)


def test_a_broken_message_for_a_finished_run_never_runs_the_actor(stack: Stack) -> None:
    done = stack.new_run("succeeded")
    stack.send(done, overlap="banana")
    stack.send("not-a-run-id")
    stack.send(2**70)
    stack.join()
    assert stack.executions == []
    assert stack.run(done)["state"] == "succeeded"


def test_a_broken_message_fails_its_run_saying_why_and_runs_nothing(stack: Stack) -> None:
    run_id = stack.new_run()
    stack.send(run_id, overlap="banana")
    stack.join()
    assert stack.executions == []
    run = stack.run(run_id)
    assert run["state"] == "failed" and run["attempts"] == 0
    assert "the start check failed: ValueError" in run["error"] and "banana" in run["error"]


def test_a_duplicate_of_a_live_attempt_waits_and_is_dropped_when_it_ends(stack: Stack) -> None:
    run_id = stack.new_run()
    stack.send(run_id, overlap="allow", args={"wait": True})
    wait_for(lambda: stack.executions, 30, "the first execution to start")
    stack.send(run_id, overlap="allow", args={"wait": True})  # the broker redelivered it: a duplicate
    # Deferred, back after the live attempt's TTL would have run out, deferred again: its heartbeat kept it alive.
    wait_for(lambda: stack.actions.count("run_duplicate_busy") >= 2, 30, "the duplicate to be deferred twice")
    assert stack.run(run_id)["state"] == "running"
    stack.release.set()
    stack.join()
    assert stack.executions == [(run_id, 1)]
    run = stack.run(run_id)
    assert (run["state"], run["attempts"]) == ("succeeded", 1)


def test_a_backfill_run_waiting_for_its_lease_logs_the_wait_once_not_per_try(stack: Stack) -> None:
    stack._logger.setLevel(logging.DEBUG)  # to see each try (at DEBUG), and know the wait went round
    holder = stack.new_run("running")
    stack.query("INSERT INTO run_locks (lock_key, run_id, expires_at) VALUES ('kb', $1, now() + interval '1h')", holder)
    waiting = stack.new_run()
    stack.query("UPDATE runs SET trigger = 'backfill' WHERE id = $1", waiting)
    stack.send(waiting, overlap="skip", lock_key="kb")
    wait_for(lambda: stack.actions.count("run_waiting_lock_retry") >= 3, 30, "the backfill run to try three times")
    stack.query("DELETE FROM run_locks WHERE lock_key = 'kb'")  # the holder ends
    stack.join()
    assert stack.executions == [(waiting, 1)]
    assert stack.run(waiting)["state"] == "succeeded"
    assert (stack.actions.count("run_waiting_lock"), stack.actions.count("run_lease_acquired")) == (1, 1)
    assert stack.actions.index("run_waiting_lock") < stack.actions.index("run_lease_acquired")


def test_the_attempt_number_comes_from_the_database(stack: Stack) -> None:
    run_id = stack.new_run()
    stack.query("UPDATE runs SET attempts = 2 WHERE id = $1", run_id)  # two attempts lost before
    stack.send(run_id, overlap="allow")
    stack.join()
    assert stack.executions == [(run_id, 3)]


def test_an_output_postgresql_cannot_store_is_kept_as_its_repr(stack: Stack) -> None:
    run_id = stack.new_run()
    stack.send(run_id, overlap="allow", args={"result": {"ratio": float("nan"), "note": "a\u0000b"}})
    stack.join()
    run = stack.run(run_id)
    assert run["state"] == "succeeded"
    output = json.loads(run["output"])
    assert "nan" in output["repr"] and "jsonb cannot hold" in output["note"]

"""Retries on Dramatiq's StubBroker with a real in-process Worker: what is retried, when, and what fails.

Messages carry their options the way a schedule's run does (``max_retries``, ``min_backoff``, ``max_backoff``,
``time_limit``, ``retry_timeouts``). The ``Attempts`` middleware sits above Retries, where RunLifecycle does, and
records what it sees after Retries' verdict. Backoffs are milliseconds here so the tests stay fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, TimeLimit

import app.actors  # noqa: F401  (as every entry point does: the broker first, then the actors on it)
from actors.probe import probe
from app.middleware.retries import Retries

MIN_BACKOFF = 20
MAX_BACKOFF = 1_000
JOIN_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Attempt:
    actor: str
    error: str | None
    failed: bool
    options: dict[str, Any]


class Attempts(dramatiq.Middleware):
    """Every attempt as the middleware above Retries sees it (RunLifecycle's place in the stack)."""

    def __init__(self) -> None:
        self.seen: list[Attempt] = []

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        error = type(exception).__name__ if exception is not None else None
        self.seen.append(Attempt(message.actor_name, error, message.failed, dict(message.options)))


@dataclass
class Stack:
    broker: StubBroker
    attempts: Attempts

    def run(self) -> list[Attempt]:
        """Process everything sent so far, retries included; the attempts, in order."""
        self.broker.join("default", fail_fast=False, timeout=JOIN_TIMEOUT_MS)
        return self.attempts.seen


@pytest.fixture
def stack() -> Iterator[Callable[[], Stack]]:
    """A StubBroker with [Attempts, Retries, TimeLimit, CurrentMessage] (AsyncIO first), its actors, a worker."""
    workers: list[dramatiq.Worker] = []

    def build() -> Stack:
        attempts = Attempts()
        broker = StubBroker(
            middleware=[
                AsyncIO(),
                attempts,
                Retries(max_retries=3, min_backoff=MIN_BACKOFF, max_backoff=MAX_BACKOFF, rng=random.Random(7)),
                TimeLimit(interval=20),
                CurrentMessage(),
            ]
        )
        broker.emit_after("process_boot")  # starts TimeLimit's watchdog, as the dramatiq CLI does
        dramatiq.actor(actor_name="probe", broker=broker)(probe.fn)
        dramatiq.actor(actor_name="sleep_async", broker=broker)(_sleep_async)
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
        worker.start()
        workers.append(worker)
        return Stack(broker, attempts)

    yield build
    for worker in workers:
        worker.stop()


async def _sleep_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


def send(stack: Stack, actor: str, options: dict[str, Any], **kwargs: Any) -> None:
    stack.broker.get_actor(actor).send_with_options(kwargs=kwargs, **options)


@pytest.fixture
def service() -> Iterator[tuple[str, list[tuple[int, dict[str, str]]]]]:
    """A loopback HTTP server answering GETs with the scripted (status, headers), then 200s."""
    script: list[tuple[int, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers = script.pop(0) if script else (200, {})
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/health", script
    server.shutdown()
    server.server_close()
    thread.join()


RUN = {"run_id": 1, "max_retries": 3, "min_backoff": MIN_BACKOFF, "max_backoff": MAX_BACKOFF}


def test_transient_failures_are_retried_with_backoff_until_success(stack: Callable[[], Stack]) -> None:
    s = stack()
    send(s, "probe", RUN, fail_times=2)
    attempts = s.run()
    assert [a.error for a in attempts] == ["ProbeFailure", "ProbeFailure", None]
    assert not any(a.failed for a in attempts)
    first, second = (a.options["retry_delay_ms"] for a in attempts[:2])
    assert MIN_BACKOFF <= first < 2 * MIN_BACKOFF
    assert 2 * MIN_BACKOFF <= second < 4 * MIN_BACKOFF
    assert attempts[-1].options["retries"] == 2
    assert "retry_delay_ms" not in attempts[-1].options
    assert s.broker.dead_letters == []


def test_a_permanent_error_fails_on_the_first_attempt(
    stack: Callable[[], Stack], caplog: pytest.LogCaptureFixture
) -> None:
    s = stack()
    with caplog.at_level(logging.WARNING, logger="app.middleware.retries"):
        send(s, "probe", RUN, fail_times=1, permanent=True)
        attempts = s.run()
    assert [(a.error, a.failed) for a in attempts] == [("PermanentError", True)]
    assert attempts[0].options["failure_reason"] == "permanent: PermanentError"
    assert "retry_delay_ms" not in attempts[0].options
    assert "PermanentError: probe failing on purpose" in attempts[0].options["traceback"]
    assert len(s.broker.dead_letters) == 1
    ours = [r.__dict__ for r in caplog.records if r.name == "app.middleware.retries"]
    assert [(r["action"], r["run_id"]) for r in ours] == [("run_failed_permanently", 1)]


def test_retries_are_exhausted_after_the_messages_max_retries(stack: Callable[[], Stack]) -> None:
    s = stack()
    send(s, "probe", {**RUN, "max_retries": 2}, fail_times=10)
    attempts = s.run()
    assert [(a.error, a.failed) for a in attempts] == [("ProbeFailure", False)] * 2 + [("ProbeFailure", True)]
    assert attempts[-1].options["failure_reason"] == "retries exhausted after 2: ProbeFailure"
    assert len(s.broker.dead_letters) == 1


def test_an_http_404_fails_at_once(stack: Callable[[], Stack], service: tuple[str, list[Any]]) -> None:
    url, script = service
    script.append((404, {}))
    s = stack()
    send(s, "probe", RUN, url=url)
    attempts = s.run()
    assert [(a.error, a.failed) for a in attempts] == [("HTTPStatusError", True)]
    assert attempts[0].options["failure_reason"] == "permanent: HTTPStatusError 404 Not Found"


def test_an_http_429_waits_for_retry_after_beyond_max_backoff(
    stack: Callable[[], Stack], service: tuple[str, list[Any]]
) -> None:
    url, script = service
    script.append((429, {"Retry-After": "1"}))
    s = stack()
    send(s, "probe", {**RUN, "max_backoff": 50}, url=url)
    attempts = s.run()
    assert [(a.error, a.failed) for a in attempts] == [("HTTPStatusError", False), (None, False)]
    assert attempts[0].options["retry_delay_ms"] == 1_000


@pytest.mark.parametrize(("retry_timeouts", "attempt_count"), [(False, 1), (True, 2)])
def test_an_async_actor_past_its_time_limit_is_retried_only_when_asked(
    stack: Callable[[], Stack], retry_timeouts: bool, attempt_count: int
) -> None:
    s = stack()
    send(s, "sleep_async", {**RUN, "max_retries": 1, "time_limit": 500, "retry_timeouts": retry_timeouts}, seconds=5)
    attempts = s.run()
    assert [a.error for a in attempts] == ["TimeLimitExceeded"] * attempt_count
    assert [a.failed for a in attempts] == [False] * (attempt_count - 1) + [True]
    reason = attempts[-1].options["failure_reason"]
    if retry_timeouts:
        assert reason.startswith("retries exhausted after 1: TimeLimitExceeded")
    else:
        assert reason.startswith("permanent: TimeLimitExceeded")


def test_a_sleeping_probe_is_stopped_at_its_time_limit_and_frees_the_worker(stack: Callable[[], Stack]) -> None:
    s = stack()  # one worker thread: the second message runs only once the first has stopped
    send(s, "probe", {**RUN, "time_limit": 1_000, "max_retries": 0}, seconds=10)
    send(s, "probe", {**RUN, "run_id": 2}, output="next")
    # Without the time limit taking effect the 10 s sleep would outlast JOIN_TIMEOUT_MS / 2 and this raises.
    s.broker.join("default", fail_fast=False, timeout=JOIN_TIMEOUT_MS // 2)
    assert [(a.options["run_id"], a.error, a.failed) for a in s.attempts.seen] == [
        (1, "TimeLimitExceeded", True),
        (2, None, False),
    ]


class RefusingBroker(StubBroker):
    """A broker that went away: it cannot take the retry."""

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if delay is not None:
            raise ConnectionError("broker went away")
        return super().enqueue(message, delay=delay)


def test_a_retry_that_cannot_be_enqueued_dead_letters_the_message_instead_of_losing_it() -> None:
    broker = RefusingBroker(middleware=[])
    actor = dramatiq.actor(actor_name="flaky", broker=broker)(lambda: None)
    message = dramatiq.MessageProxy(actor.message_with_options(run_id=1))
    Retries().after_process_message(broker, message, exception=ConnectionResetError())
    assert message.failed
    assert message.options["failure_reason"] == "retry not scheduled: ConnectionError"
    assert message.options.get("retries", 0) == 0
    assert "retry_delay_ms" not in message.options


def test_actor_options_apply_when_the_message_has_none() -> None:
    broker = StubBroker(middleware=[Retries()])
    actor = dramatiq.actor(actor_name="once", broker=broker, max_retries=0)(lambda: None)
    message = dramatiq.MessageProxy(actor.message())
    Retries().after_process_message(broker, message, exception=ConnectionResetError())
    assert message.failed
    assert message.options["failure_reason"].startswith("retries exhausted after 0: ConnectionResetError")


def test_success_and_skips_leave_the_message_alone() -> None:
    broker = StubBroker(middleware=[])
    actor = dramatiq.actor(actor_name="ok", broker=broker)(lambda: None)
    message = dramatiq.MessageProxy(actor.message())
    Retries().after_process_message(broker, message, result=None)
    Retries().after_skip_message(broker, message)
    assert not message.failed
    assert message.options == {}

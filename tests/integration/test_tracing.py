"""Tracing end to end in one process: ``setup_tracing`` exporting over OTLP/HTTP to a loopback receiver that
decodes the protobuf, a StubBroker whose stack has the ``Tracing`` middleware, and a real in-process Worker.

OpenTelemetry lets a process set its global tracer provider once; ``globals_reset`` puts the global back after
each test (as opentelemetry-test-utils' ``reset_trace_globals`` does), so each test has its own provider.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, SkipMessage
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from app.middleware.retries import Retries
from app.middleware.tracing import Tracing
from app.settings import Settings
from app.tracing import setup_tracing, shutdown_tracing, tracer_from
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan

JOIN_TIMEOUT_MS = 10_000
API_KEY = "sk-test-0123456789abcdef"
QUERY_TOKEN = "dingtalk-token-9f8e7d6c5b4a"


@pytest.fixture
def globals_reset() -> Iterator[None]:
    saved = trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER = Once(), None
    yield
    trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER = saved


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def provider(receiver: OtlpReceiver, globals_reset: None) -> Iterator[TracerProvider]:
    provider = setup_tracing(Settings(otlp_endpoint=receiver.endpoint, service_name="punchclock-test"))
    assert provider is not None
    yield provider
    shutdown_tracing(provider)


@pytest.fixture
def service() -> Iterator[str]:
    """A loopback HTTP server answering every GET with 200 ``ok``; its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


class SkipFlagged(dramatiq.Middleware):
    """Skips messages sent with ``skip=True``, below Tracing, as RunLifecycle skips a run whose lock is held."""

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if message.options.get("skip"):
            raise SkipMessage()

    @property
    def actor_options(self) -> set[str]:
        return {"skip"}


class ContextProbe(dramatiq.Middleware):
    """Above Tracing, so its ``after_*`` hooks run after ours: whether a span was still current on the worker
    thread once each message was done with."""

    def __init__(self) -> None:
        self.span_left_current: list[bool] = []

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, **_: Any) -> None:
        self.span_left_current.append(trace.get_current_span().get_span_context().is_valid)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.span_left_current.append(trace.get_current_span().get_span_context().is_valid)


@dataclass
class Stack:
    broker: StubBroker
    worker: dramatiq.Worker
    tracer: trace.Tracer
    probe: ContextProbe

    def send(self, actor: Callable[..., Any], *args: Any, **options: Any) -> None:
        self.broker.get_actor(actor.__name__).send_with_options(args=args, **options)

    def run(self) -> None:
        """Process everything sent so far, retries included."""
        self.broker.join("default", fail_fast=False, timeout=JOIN_TIMEOUT_MS)
        self.worker.join()


@pytest.fixture
def stack(provider: TracerProvider) -> Iterator[Callable[..., Stack]]:
    """A StubBroker with [ContextProbe, Tracing, AsyncIO, SkipFlagged, Retries], the given actors, a worker."""
    workers: list[dramatiq.Worker] = []

    def build(*actors: Callable[..., Any]) -> Stack:
        probe = ContextProbe()
        broker = StubBroker(
            middleware=[probe, Tracing(provider), AsyncIO(), SkipFlagged(), Retries(max_retries=0, min_backoff=1)]
        )
        broker.emit_after("process_boot")
        for fn in actors:
            dramatiq.actor(actor_name=fn.__name__, broker=broker)(fn)
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
        worker.start()
        workers.append(worker)
        return Stack(broker, worker, tracer_from(provider, "tests"), probe)

    yield build
    for worker in workers:
        worker.stop()


def parent_of(span: ReceivedSpan, spans: list[ReceivedSpan]) -> ReceivedSpan:
    (parent,) = [s for s in spans if s["span_id"] == span["parent_span_id"]]
    return parent


def test_a_run_continues_its_producers_trace_and_http_calls_are_its_children(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider, service: str
) -> None:
    def fetch(path: str) -> None:
        with httpx.Client() as client:
            client.get(f"{service}{path}", headers={"Authorization": f"Bearer {API_KEY}"})

    s = stack(fetch)
    with s.tracer.start_as_current_span("producer") as producer:
        s.send(fetch, f"/data?access_token={QUERY_TOKEN}&day=1", run_id=7, schedule_id=3)
    s.run()
    provider.force_flush()

    run = receiver.one("run fetch")
    http = receiver.one("GET")
    producer_context = producer.get_span_context()
    assert run["trace_id"] == trace.format_trace_id(producer_context.trace_id)
    assert run["parent_span_id"] == trace.format_span_id(producer_context.span_id)
    assert run["kind"] == "CONSUMER"
    assert run["attributes"] == {
        "messaging.system": "dramatiq",
        "messaging.operation.type": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": run["attributes"]["messaging.message.id"],
        "punchclock.attempt": 1,
        "punchclock.run_id": 7,
        "punchclock.schedule_id": 3,
    }
    assert run["resource"]["service.name"] == "punchclock-test"
    assert http["kind"] == "CLIENT"
    assert (http["trace_id"], http["parent_span_id"]) == (run["trace_id"], run["span_id"])
    assert http["attributes"]["http.url"] == f"{service}/data?access_token=***&day=***"
    exported = b"".join(receiver.bodies)
    assert API_KEY.encode() not in exported
    assert QUERY_TOKEN.encode() not in exported


def test_a_message_sent_outside_any_span_starts_a_trace_named_after_its_actor(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider
) -> None:
    def tick() -> None:
        pass

    s = stack(tick)
    message = s.broker.get_actor("tick").send()
    assert "traceparent" not in message.options
    s.run()
    provider.force_flush()
    span = receiver.one("tick")
    assert span["parent_span_id"] == ""
    assert "punchclock.run_id" not in span["attributes"]


def test_messages_an_actor_sends_are_children_of_its_run(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider
) -> None:
    def downstream() -> None:
        pass

    def upstream() -> None:
        s.broker.get_actor("downstream").send_with_options(run_id=2)

    s = stack(upstream, downstream)
    s.send(upstream, run_id=1)
    s.run()
    provider.force_flush()
    parent, child = receiver.one("run upstream"), receiver.one("run downstream")
    assert parent["parent_span_id"] == ""
    assert (child["trace_id"], child["parent_span_id"]) == (parent["trace_id"], parent["span_id"])


def test_each_attempt_is_a_span_and_a_failed_one_records_its_error(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider
) -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError(f"cannot reach https://api.example.com/v1/send?key={QUERY_TOKEN}")

    s = stack(flaky)
    with s.tracer.start_as_current_span("fire flaky") as fire:
        s.send(flaky, run_id=9, max_retries=1, min_backoff=1, max_backoff=5)
    s.run()
    provider.force_flush()

    first, second = sorted(receiver.by_name("run flaky"), key=lambda span: span["attributes"]["punchclock.attempt"])
    fire_id = trace.format_span_id(fire.get_span_context().span_id)
    assert first["parent_span_id"] == second["parent_span_id"] == fire_id
    assert [first["attributes"]["punchclock.attempt"], second["attributes"]["punchclock.attempt"]] == [1, 2]
    assert first["status"] == {
        "code": "ERROR",
        "message": "ConnectionError: cannot reach https://api.example.com/v1/send?key=***",
    }
    assert first["attributes"]["punchclock.retry_delay_ms"] >= 1
    (event,) = first["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ConnectionError"
    assert event["attributes"]["exception.message"] == "cannot reach https://api.example.com/v1/send?key=***"
    assert "raise ConnectionError" in event["attributes"]["exception.stacktrace"]
    assert second["status"]["code"] == "UNSET"
    assert second["events"] == []
    assert QUERY_TOKEN.encode() not in b"".join(receiver.bodies)


def test_spans_inside_an_async_actor_are_children_of_its_run(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider, service: str
) -> None:
    async def summarize() -> None:
        with tracer_from(provider, "tests").start_as_current_span("step summarize"):
            async with httpx.AsyncClient() as client:
                await client.get(f"{service}/async")

    s = stack(summarize)
    s.send(summarize, run_id=4)
    s.run()
    provider.force_flush()

    spans = receiver.spans()
    run, step, http = receiver.one("run summarize"), receiver.one("step summarize"), receiver.one("GET")
    assert parent_of(step, spans) == run
    assert parent_of(http, spans) == step
    assert {span["trace_id"] for span in spans} == {run["trace_id"]}


def test_a_skipped_message_ends_its_span_and_leaves_no_context_behind(
    stack: Callable[..., Stack], receiver: OtlpReceiver, provider: TracerProvider
) -> None:
    def work() -> None:
        pass

    s = stack(work)
    s.send(work, run_id=5, skip=True)
    s.send(work, run_id=6)
    s.run()
    provider.force_flush()

    skipped, done = sorted(receiver.by_name("run work"), key=lambda span: span["attributes"]["punchclock.run_id"])
    assert skipped["attributes"]["punchclock.skipped"] is True
    assert "punchclock.skipped" not in done["attributes"]
    assert s.probe.span_left_current == [False, False]


def test_worker_shutdown_exports_what_is_buffered(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver, globals_reset: None
) -> None:
    # Batches leave every 10 minutes here: only an explicit flush exports within this test.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    provider = setup_tracing(Settings(otlp_endpoint=receiver.endpoint))
    try:

        def work() -> None:
            pass

        broker = StubBroker(middleware=[Tracing(provider), AsyncIO()])
        broker.emit_after("process_boot")
        dramatiq.actor(actor_name="work", broker=broker)(work)
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
        worker.start()
        broker.get_actor("work").send()
        broker.join("default", timeout=JOIN_TIMEOUT_MS)
        worker.join()
        assert receiver.spans() == []
        worker.stop()
        assert [span["name"] for span in receiver.spans()] == ["work"]
    finally:
        shutdown_tracing(provider)


def test_console_prints_spans(capsys: pytest.CaptureFixture[str], globals_reset: None) -> None:
    provider = setup_tracing(Settings(otlp_endpoint="console"))
    try:
        with tracer_from(provider, "tests").start_as_current_span("printed span"):
            pass
        assert '"name": "printed span"' in capsys.readouterr().out
    finally:
        shutdown_tracing(provider)


def test_setup_sets_the_global_provider_and_instruments_httpx(receiver: OtlpReceiver, globals_reset: None) -> None:
    provider = setup_tracing(Settings(otlp_endpoint=receiver.endpoint))
    try:
        assert trace.get_tracer_provider() is provider
        assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    finally:
        shutdown_tracing(provider)
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry


def test_no_endpoint_no_provider(globals_reset: None) -> None:
    assert setup_tracing(Settings(otlp_endpoint="")) is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry

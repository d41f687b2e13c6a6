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

import asyncpg
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
from app.workflows.context import WorkflowContext
from app.workflows.definition import workflow
from app.workflows.runner import execute
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan

JOIN_TIMEOUT_MS = 10_000
API_KEY = "sk-test-0123456789abcdef"
QUERY_TOKEN = "dingtalk-token-9f8e7d6c5b4a"
PATH_TOKEN = "PATHSECRET-888"
KNOWN_KEY = "sk-known-to-the-process-42"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.signature"
PASSWORD = "hunter2-db-password"


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
    """A loopback HTTP server answering every GET with 200 ``ok`` (404 under ``/hooks/``); its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404 if self.path.startswith("/hooks/") else 200)
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


def test_every_exported_span_is_redacted_whoever_made_it(
    receiver: OtlpReceiver, service: str, globals_reset: None
) -> None:
    """Spans made by hand, by the httpx instrumentation and by a raw ``record_exception``: the exported protobuf
    holds no secret of any shape (a known key, a path token, a query token, a bearer token, a password)."""
    provider = setup_tracing(Settings(otlp_endpoint=receiver.endpoint, llm_api_key=KNOWN_KEY))
    assert provider is not None
    try:
        leaky = f"{service}/hooks/{PATH_TOKEN}?token={QUERY_TOKEN}"
        tracer = tracer_from(provider, "tests")
        with tracer.start_as_current_span(
            f"call {leaky}", record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attribute("note", f"Authorization: Bearer {BEARER}")
            span.set_attribute("config", f"host=db password={PASSWORD} key {KNOWN_KEY}")
            span.set_attribute("urls", [leaky, "plain"])
            span.add_event("retry", {"detail": f"api_key: {KNOWN_KEY}", "attempt": 2})
            span.record_exception(ValueError(f"failed {leaky}"))  # a library's own, raw
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"failed {leaky} with {KNOWN_KEY}"))
            with httpx.Client() as client:
                assert client.get(leaky).status_code == 404
        provider.force_flush()
    finally:
        shutdown_tracing(provider)

    exported = b"".join(receiver.bodies)
    for secret in (KNOWN_KEY, PATH_TOKEN, QUERY_TOKEN, BEARER, PASSWORD):
        assert secret.encode() not in exported, secret
    masked = f"{service}/hooks/***?token=***"
    mine = receiver.one(f"call {masked}")
    assert mine["attributes"]["note"] == "Authorization: Bearer ***"
    assert mine["attributes"]["config"] == "host=db password=*** key ***"
    assert mine["attributes"]["urls"] == [masked, "plain"]
    assert mine["status"]["message"] == f"failed {masked} with ***"
    retry, error = mine["events"]
    assert (retry["attributes"]["detail"], retry["attributes"]["attempt"]) == ("api_key: ***", 2)
    assert error["attributes"]["exception.message"] == f"failed {masked}"
    assert receiver.one("GET")["attributes"]["http.url"] == masked


async def test_a_statement_is_a_span_with_its_text_and_no_parameter_values(
    receiver: OtlpReceiver, provider: TracerProvider, pool: asyncpg.Pool[Any]
) -> None:
    tracer = tracer_from(provider, "tests")
    with tracer.start_as_current_span("work"):
        assert await pool.fetchval("SELECT $1::text || '-seen'", "param-value-5f4e3d") == "param-value-5f4e3d-seen"
    assert await pool.fetchval("SELECT 'alone'") == "alone"  # outside any span: no trace of its own
    provider.force_flush()

    work = receiver.one("work")
    statements = [s for s in receiver.spans() if s["attributes"].get("db.system") == "postgresql"]
    (select,) = statements
    assert (select["name"], select["kind"], select["parent_span_id"]) == ("SELECT", "CLIENT", work["span_id"])
    assert select["attributes"]["db.statement"] == "SELECT $1::text || '-seen'"
    assert "db.statement.parameters" not in select["attributes"]
    assert b"param-value-5f4e3d" not in b"".join(receiver.bodies)


@workflow("leaky_fetch", uses={"http"})
async def leaky_fetch(ctx: WorkflowContext) -> None:
    async with ctx.step("fetch"):
        (await ctx.http.get(ctx.params["source"])).raise_for_status()


async def test_a_failed_step_is_stored_and_traced_redacted(
    receiver: OtlpReceiver, provider: TracerProvider, pool: asyncpg.Pool[Any], service: str
) -> None:
    run_id = await pool.fetchval(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state)"
        " VALUES ('leaky', 'run_workflow', now(), 'manual', 'running') RETURNING id"
    )
    source = f"{service}/hooks/{PATH_TOKEN}?token={QUERY_TOKEN}"

    def unused() -> Any:
        raise AssertionError("not declared")

    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPStatusError):
            await execute(
                leaky_fetch, {"source": source}, run_id=run_id, attempt=1, pool=pool, http=http, llm=unused, dify=unused
            )
    provider.force_flush()

    masked = f"{service}/hooks/***?token=***"
    (step,) = await pool.fetch("SELECT name, status, error FROM run_steps WHERE run_id = $1", run_id)
    assert (step["name"], step["status"]) == ("fetch", "error")
    assert step["error"].startswith(f"HTTPStatusError: Client error '404 Not Found' for url '{masked}'")
    span = receiver.one("step fetch")
    assert span["status"]["message"].startswith(f"HTTPStatusError: Client error '404 Not Found' for url '{masked}'")
    (event,) = span["events"]
    assert masked in event["attributes"]["exception.message"]
    assert masked in event["attributes"]["exception.stacktrace"]
    for secret in (PATH_TOKEN, QUERY_TOKEN):
        assert secret not in step["error"]
        assert secret.encode() not in b"".join(receiver.bodies)

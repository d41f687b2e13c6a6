"""app.tracing's pure parts: the trace context in options, ids and links, what a span may show of a URL or an
error. Spans come from a local SDK provider with an in-memory exporter; the global provider is never touched."""

from __future__ import annotations

import re
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.errors import ConfigurationError
from app.middleware.tracing import Tracing
from app.settings import Settings
from app.tracing import (
    context_from,
    current_trace_id,
    inject_traceparent,
    jaeger_link,
    record_error,
    setup_tracing,
    traces_url,
)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")  # flags: sampled, and random (W3C level 2)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests")
    provider.shutdown()


def test_the_context_round_trips_through_options(tracer: trace.Tracer) -> None:
    options: dict[str, object] = {"run_id": 3}
    with tracer.start_as_current_span("fire") as span:
        inject_traceparent(options)
    match = TRACEPARENT.match(str(options["traceparent"]))
    assert match
    assert match.groups() == (
        trace.format_trace_id(span.get_span_context().trace_id),
        trace.format_span_id(span.get_span_context().span_id),
    )
    remote = trace.get_current_span(context_from(options)).get_span_context()
    assert remote.is_remote
    assert (remote.trace_id, remote.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)


def test_nothing_is_injected_outside_a_span() -> None:
    options: dict[str, object] = {"run_id": 3}
    inject_traceparent(options)
    assert options == {"run_id": 3}


@pytest.mark.parametrize("options", [{}, {"traceparent": None}, {"traceparent": "not-a-traceparent"}, {"x": 1}])
def test_options_without_a_valid_context_give_no_parent(options: dict[str, object]) -> None:
    assert not trace.get_current_span(context_from(options)).get_span_context().is_valid


def test_current_trace_id(tracer: trace.Tracer) -> None:
    assert current_trace_id() is None
    with tracer.start_as_current_span("run") as span:
        assert current_trace_id() == f"{span.get_span_context().trace_id:032x}"


def test_jaeger_link() -> None:
    settings = Settings(jaeger_ui_url="http://jaeger.internal:16686/")
    assert jaeger_link(settings, "ab" * 16) == f"http://jaeger.internal:16686/trace/{'ab' * 16}"


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://jaeger:4318", "http://jaeger:4318/v1/traces"),
        ("https://otel.example.com/", "https://otel.example.com/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ],
)
def test_traces_url(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_an_unusable_endpoint_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match='PUNCHCLOCK_OTLP_ENDPOINT="jaeger:4318"'):
        setup_tracing(Settings(otlp_endpoint="jaeger:4318"))


def test_record_error_scrubs_the_url_from_message_and_stack(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    request = httpx.Request("POST", "https://oapi.dingtalk.com/robot/send?access_token=s3cr3t")
    response = httpx.Response(401, request=request)
    with tracer.start_as_current_span("step", record_exception=False, set_status_on_exception=False) as span:
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            record_error(span, exc)
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is trace.StatusCode.ERROR
    assert "HTTPStatusError" in str(finished.status.description)
    (event,) = finished.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert "access_token=***" in str(event.attributes["exception.message"])
    for value in (*event.attributes.values(), finished.status.description):
        assert "s3cr3t" not in str(value)


def test_enqueue_injects_the_current_context_and_keeps_one_already_there(tracer: trace.Tracer) -> None:
    broker = StubBroker(middleware=[Tracing(None)])
    broker.declare_queue("default")
    fresh = dramatiq.Message(queue_name="default", actor_name="a", args=(), kwargs={}, options={})
    frozen = dramatiq.Message(
        queue_name="default",
        actor_name="a",
        args=(),
        kwargs={},
        options={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
    )
    with tracer.start_as_current_span("fire") as span:
        sent_fresh = broker.enqueue(fresh)
        sent_frozen = broker.enqueue(frozen, delay=10)
    assert sent_fresh.options["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    assert sent_frozen.options["traceparent"] == f"00-{'1' * 32}-{'2' * 16}-01"
    queued = dramatiq.Message.decode(broker.queues["default"].get_nowait())  # what the broker would deliver
    assert queued.options["traceparent"] == sent_fresh.options["traceparent"]

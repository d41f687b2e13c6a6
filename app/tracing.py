"""OpenTelemetry for punchclock: one SDK tracer provider per process, and the W3C trace context in message options.

``PUNCHCLOCK_OTLP_ENDPOINT`` decides where spans go:

- empty: no provider (:func:`setup_tracing` returns ``None``); the API's no-op tracers make spans free;
- ``console``: each span printed to stdout as it ends (``punchclock dev``);
- ``http(s)://host:4318``: OTLP/HTTP protobuf to ``<endpoint>/v1/traces``, in batches (Jaeger, a collector).

**Pass the provider, don't rely on the global one.** OpenTelemetry lets a process set its global provider once:
later calls log "Overriding of current TracerProvider is not allowed" and change nothing, and a tracer got from
the global proxy binds to the first real provider for good. :func:`setup_tracing` sets the global (so third-party
instrumentation that only knows the global finds it) and *returns* the provider; the ``Tracing`` middleware, the
httpx instrumentation and our own spans take it explicitly (:func:`tracer_from`), which is what lets tests run
one provider each in a single process.

**Secrets.** Every exported span passes through :class:`~app.span_export.RedactingExporter`: its name,
attributes, events (``exception.message``, ``exception.stacktrace``), links and status description are
redacted by :func:`app.redaction.redact`, whoever made the span. That covers the httpx instrumentation, which
records the full URL, query string included (webhook URLs carry their token in the query, DingTalk and WeCom,
or the path, Slack and Feishu), and exceptions recorded by any library. It records no headers unless
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` asks it to. :func:`setup_tracing` also registers the settings'
secrets (:func:`app.redaction.register_settings`): it is the first thing every worker and clock process does
with its settings.

**SQL.** The asyncpg instrumentation makes a CLIENT span per statement with its text (``db.statement``, or
``db.query.text`` under ``OTEL_SEMCONV_STABILITY_OPT_IN=database``) and never its parameter values
(``capture_parameters=False``; our statements take every value as a ``$n`` parameter). A statement made outside
any span (the heartbeat thread's beat every second, pool housekeeping) would be a trace of its own; the sampler
drops those (:class:`LoneStatementsDropped`), so SQL spans appear inside the runs, ticks and steps that made them.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from app.errors import ConfigurationError
from app.redaction import redact, register_settings
from app.settings import Settings
from app.span_export import RedactingExporter

CONSOLE = "console"
TRACES_PATH = "/v1/traces"
# The message-option keys the trace context travels in (W3C Trace Context header names).
CONTEXT_KEYS = ("traceparent", "tracestate")
# A collector that is down must not hold a worker's shutdown for long.
FLUSH_TIMEOUT_MS = 5_000
# The attribute naming the database system, in the old semantic conventions and the stable ones.
DB_SYSTEM_ATTRIBUTES = ("db.system", "db.system.name")

# W3C only, whatever OTEL_PROPAGATORS says: baggage would copy arbitrary context into every message.
_propagator = TraceContextTextMapPropagator()


def setup_tracing(settings: Settings) -> TracerProvider | None:
    """This process's tracer provider, set as the global one, with httpx and asyncpg instrumented to it;
    ``None`` (and nothing instrumented) when ``otlp_endpoint`` is empty. Call once per process, at the entry
    point; a worker flushes it at shutdown through the ``Tracing`` middleware, other processes call
    :func:`shutdown_tracing`. Registers the settings' secrets for redaction first, tracing on or off.

    Raises :class:`ConfigurationError` for an endpoint that is neither ``console`` nor an http(s) URL.
    """
    register_settings(settings)
    endpoint = settings.otlp_endpoint.strip()
    if not endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    provider.sampler = LoneStatementsDropped(provider.sampler)  # before any tracer exists, so all of them use it
    if endpoint == CONSOLE:
        provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(ConsoleSpanExporter(out=sys.stdout))))
    elif endpoint.startswith(("http://", "https://")):
        exporter = RedactingExporter(OTLPSpanExporter(endpoint=traces_url(endpoint)))
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        raise ConfigurationError(
            f'PUNCHCLOCK_OTLP_ENDPOINT="{redact(endpoint)}": use an OTLP/HTTP base URL (http://jaeger:4318),'
            " console, or leave it unset"
        )
    trace.set_tracer_provider(provider)
    httpx_instrumentor = HTTPXClientInstrumentor()
    if httpx_instrumentor.is_instrumented_by_opentelemetry:  # bound to an earlier provider (tests): rebind
        httpx_instrumentor.uninstrument()
    httpx_instrumentor.instrument(tracer_provider=provider)
    asyncpg_instrumentor = _asyncpg_instrumentor()
    if asyncpg_instrumentor.is_instrumented_by_opentelemetry:
        asyncpg_instrumentor.uninstrument()
    asyncpg_instrumentor.instrument(tracer_provider=provider)
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Export what is buffered, stop the exporter and un-instrument httpx and asyncpg. Idempotent."""
    if provider is None:
        return
    HTTPXClientInstrumentor().uninstrument()
    _asyncpg_instrumentor().uninstrument()
    provider.force_flush(FLUSH_TIMEOUT_MS)
    provider.shutdown()


def _asyncpg_instrumentor() -> AsyncPGInstrumentor:
    """The (singleton) asyncpg instrumentor, set to record statement text and never parameter values."""
    return AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]


class LoneStatementsDropped(Sampler):
    """Drops a database span that has no parent (a statement made outside any traced operation) and leaves
    every other decision to ``delegate`` (the SDK's default: ``OTEL_TRACES_SAMPLER``, else parent-based,
    always on)."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        lone = not trace.get_current_span(parent_context).get_span_context().is_valid
        if lone and attributes and any(key in attributes for key in DB_SYSTEM_ATTRIBUTES):
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LoneStatementsDropped{{{self.delegate.get_description()}}}"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint; one already ending in ``/v1/traces`` is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else f"{endpoint}{TRACES_PATH}"


def tracer_from(provider: TracerProvider | None, name: str) -> trace.Tracer:
    """A tracer of ``provider``, or a no-op one when tracing is off."""
    return provider.get_tracer(name) if provider is not None else trace.NoOpTracer()


def inject_traceparent(carrier: MutableMapping[str, Any]) -> None:
    """Write the current span's context into ``carrier`` (``traceparent``, and ``tracestate`` when there is
    one). Writes nothing when no span is recording, so options stay unchanged with tracing off."""
    _propagator.inject(carrier)


def context_from(options: Mapping[str, Any]) -> otel_context.Context:
    """The context that ``options`` carry (a remote parent), or an empty one; other keys are ignored."""
    carrier = {key: options[key] for key in CONTEXT_KEYS if isinstance(options.get(key), str)}
    return _propagator.extract(carrier, context=otel_context.Context())


def current_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex digits, or ``None`` outside a (valid) span."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def jaeger_link(settings: Settings, trace_id: str) -> str:
    return f"{settings.jaeger_ui_url.rstrip('/')}/trace/{trace_id}"


def record_error(span: Span, exception: BaseException) -> None:
    """Mark ``span`` failed with ``exception`` (status ERROR and an ``exception`` event), the message and the
    stack trace redacted: an ``httpx.HTTPStatusError`` names the full URL, query string and all. (The exporter
    redacts again; this keeps the span's own copy clean for any other processor.)"""
    message = redact(str(exception))
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {message}".rstrip(": ")))
    stacktrace = redact("".join(traceback.format_exception(exception)))
    span.record_exception(exception, attributes={"exception.message": message, "exception.stacktrace": stacktrace})

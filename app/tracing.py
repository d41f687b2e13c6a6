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

**Secrets.** The httpx instrumentation records no headers unless ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``
asks it to, so ``Authorization`` stays out; but it records the full URL, query string included (it masks only
``AWSAccessKeyId``, ``Signature``, ``sig`` and ``X-Goog-Signature``), and webhook URLs carry their token in the
query (DingTalk, WeCom) or the path (Slack, Feishu). So its URL attribute is rewritten by :func:`redact_url`, and
errors are recorded through :func:`record_error`, which scrubs URLs out of the message and the stack trace.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.errors import ConfigurationError
from app.settings import Settings

CONSOLE = "console"
TRACES_PATH = "/v1/traces"
# The message-option keys the trace context travels in (W3C Trace Context header names).
CONTEXT_KEYS = ("traceparent", "tracestate")
# A collector that is down must not hold a worker's shutdown for long.
FLUSH_TIMEOUT_MS = 5_000
MASK = "***"
# The URL attribute of HTTP client spans: the old semantic conventions' name and the stable one.
URL_ATTRIBUTES = ("http.url", "url.full")

# W3C only, whatever OTEL_PROPAGATORS says: baggage would copy arbitrary context into every message.
_propagator = TraceContextTextMapPropagator()
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Path segments of 16+ characters that are not plain lowercase words: tokens, keys, UUIDs.
_SECRET_LOOKING_SEGMENT = re.compile(r"^(?![a-z._~-]+$).{16,}$")


def setup_tracing(settings: Settings) -> TracerProvider | None:
    """This process's tracer provider, set as the global one, with httpx instrumented to it; ``None`` (and
    nothing instrumented) when ``otlp_endpoint`` is empty. Call once per process, at the entry point; a worker
    flushes it at shutdown through the ``Tracing`` middleware, other processes call :func:`shutdown_tracing`.

    Raises :class:`ConfigurationError` for an endpoint that is neither ``console`` nor an http(s) URL.
    """
    endpoint = settings.otlp_endpoint.strip()
    if not endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    if endpoint == CONSOLE:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    elif endpoint.startswith(("http://", "https://")):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    else:
        raise ConfigurationError(
            f'PUNCHCLOCK_OTLP_ENDPOINT="{endpoint}": use an OTLP/HTTP base URL (http://jaeger:4318), console,'
            " or leave it unset"
        )
    trace.set_tracer_provider(provider)
    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:  # bound to an earlier provider (tests): rebind
        instrumentor.uninstrument()
    instrumentor.instrument(
        tracer_provider=provider,
        request_hook=_redact_request_url,
        async_request_hook=_redact_request_url_async,
    )
    return provider


def shutdown_tracing(provider: TracerProvider | None) -> None:
    """Export what is buffered, stop the exporter and un-instrument httpx. Idempotent."""
    if provider is None:
        return
    HTTPXClientInstrumentor().uninstrument()
    provider.force_flush(FLUSH_TIMEOUT_MS)
    provider.shutdown()


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
    """Mark ``span`` failed with ``exception`` (status ERROR and an ``exception`` event), URLs scrubbed from the
    message and the stack trace: an ``httpx.HTTPStatusError`` names the full URL, query string and all."""
    message = scrub_urls(str(exception))
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {message}".rstrip(": ")))
    stacktrace = scrub_urls("".join(traceback.format_exception(exception)))
    span.record_exception(exception, attributes={"exception.message": message, "exception.stacktrace": stacktrace})


def redact_url(url: str) -> str:
    """``url`` fit for a span: no user or password, no fragment, query values masked (names kept), and path
    segments that look like tokens (16+ characters, not a plain lowercase word) masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = "/".join(MASK if _SECRET_LOOKING_SEGMENT.match(segment) else segment for segment in parts.path.split("/"))
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def scrub_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def _redact_request_url(span: Span, request: RequestInfo) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, redact_url(str(request.url)))


async def _redact_request_url_async(span: Span, request: RequestInfo) -> None:
    _redact_request_url(span, request)

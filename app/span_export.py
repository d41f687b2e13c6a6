"""The span exporter every punchclock exporter is wrapped in: what leaves the process is redacted.

Spans are made by our code and by libraries (the httpx and asyncpg instrumentations, anything that calls
``record_exception``); redacting at export is the one place that sees them all. Each span is copied with its
name, string attributes (and strings in sequences), event names and attributes (``exception.message``,
``exception.stacktrace``), link attributes and status description passed through
:func:`app.redaction.redact`; ids, times, kinds, numbers and the resource are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import Attributes, AttributeValue

from app.redaction import redact


class RedactingExporter(SpanExporter):
    """Exports through ``inner`` the redacted copy of every span."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redacted_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _RedactedSpan(ReadableSpan):
    """A copy that reports the original's dropped counts (the copy's plain containers know none)."""

    def __init__(self, original: ReadableSpan, **fields: object) -> None:
        super().__init__(**fields)  # type: ignore[arg-type]
        self._original = original

    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with every text in it redacted."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return _RedactedSpan(
        span,
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes),
        events=[Event(redact(e.name), _attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _attributes(attributes: Attributes) -> dict[str, AttributeValue] | None:
    if attributes is None:
        return None
    return {key: _value(value) for key, value in attributes.items()}


def _value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes) and all(isinstance(v, str) for v in value):
        return [redact(str(v)) for v in value]
    return value

"""A loopback OTLP/HTTP trace receiver: the real protocol, so the SDK's OTLP exporter runs unchanged.

``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` (gzip or deflate ``Content-Encoding`` too),
decoded as ``ExportTraceServiceRequest``. Every span becomes a plain dict::

    {"name", "trace_id", "span_id", "parent_span_id" (hex; "" for a root), "kind" ("CONSUMER", "CLIENT", ...),
     "attributes" {key: value}, "status" {"code": "UNSET" | "OK" | "ERROR", "message"},
     "events" [{"name", "attributes"}], "resource" {key: value}, "scope" (instrumentation scope name)}

``bodies`` keeps every decoded request body, so a test can look for a secret in everything that was exported.

    with OtlpReceiver() as receiver:
        ...  # setup_tracing with otlp_endpoint=receiver.endpoint
        receiver.wait_for(lambda spans: any(s["name"] == "tick" for s in spans))
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"

ReceivedSpan = dict[str, Any]


class OtlpReceiver:
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL, as ``PUNCHCLOCK_OTLP_ENDPOINT`` takes it (the exporter appends ``/v1/traces``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    def by_name(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span["name"] == name]

    def one(self, name: str) -> ReceivedSpan:
        """The one span called ``name``; fails listing what arrived when there are none or several."""
        found = self.by_name(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}; received: {[s['name'] for s in self.spans()]}"
        return found[0]

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0) -> list[ReceivedSpan]:
        """Block until ``predicate(spans)`` holds for the spans received so far; return them. Fails after
        ``timeout`` seconds, listing the names of what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [span["name"] for span in self._spans]
                    raise AssertionError(f"spans not received within {timeout}s; received: {names}")
                self._changed.wait(remaining)
            return list(self._spans)

    def _receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            _span(span, resource=_attributes(resource_spans.resource.attributes), scope=scope_spans.scope.name)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._changed:
            self.bodies.append(body)
            self._spans.extend(spans)
            self._changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self._reply(404, b"not found", "text/plain")
                    return
                if self.headers.get_content_type() != PROTOBUF:
                    self._reply(415, b"OTLP/HTTP JSON is not supported here: send application/x-protobuf", "text/plain")
                    return
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                try:
                    receiver._receive(body)
                except Exception as exc:  # a malformed body: the OTLP answer is 400
                    self._reply(400, str(exc).encode(), "text/plain")
                    return
                self._reply(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _span(span: Span, *, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        "attributes": _attributes(span.attributes),
        "status": {
            "code": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
            "message": span.status.message,
        },
        "events": [{"name": event.name, "attributes": _attributes(event.attributes)} for event in span.events],
        "resource": resource,
        "scope": scope,
    }


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)

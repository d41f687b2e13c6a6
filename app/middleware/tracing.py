"""Tracing: carry the trace context in message options, and make one CONSUMER span per attempt.

Not the third-party ``opentelemetry-instrumentor-dramatiq``, which breaks send options (``delay``,
``max_retries``), and not the pika instrumentation (docs/design.md, "Traps in the libraries underneath").

- ``before_enqueue``: a message sent while a span is current gets that span's context as the ``traceparent`` (and
  ``tracestate``) options. Both brokers call the hook before encoding the message, and its options are a plain
  dict, so the keys travel with it. A message that already has a ``traceparent`` keeps it: a retry, a delayed
  re-enqueue or a run whose context was frozen on its row when the clock fired it stays where it was started.
- ``before_process_message``: a span ``run {actor}`` (a message with a ``run_id``) or ``{actor}`` (engine
  messages: ``tick``, ``notify``), child of the context in the options (a root span when there is none), made
  current on the worker thread until ``after_process_message`` / ``after_skip_message`` ends it. Attributes:
  ``messaging.system``, ``messaging.operation.type``, ``messaging.destination.name``, ``messaging.message.id``,
  ``punchclock.run_id``, ``punchclock.schedule_id``, ``punchclock.attempt`` (Dramatiq's ``retries`` + 1).
- Async actors: Dramatiq runs the coroutine on its event loop thread through ``run_coroutine_threadsafe``, whose
  ``call_soon_threadsafe`` copies the *calling* thread's context into the task, so spans made inside an async
  actor are children of the run span with nothing to add (tests/integration/test_tracing.py holds this).
- ``before_worker_shutdown`` / ``after_worker_shutdown``: flush the provider. Dramatiq's worker processes end in
  ``os._exit`` and never run ``atexit``, where the SDK would otherwise flush.

Stack position: first, before ``AsyncIO``. ``before_*`` hooks run top-down, so the span is current for every
other middleware (RunLifecycle's start and finish statements, a skip) and for messages they enqueue; ``after_*``
hooks run bottom-up, so ours ends the span after Retries has decided the attempt's fate (``retry_delay_ms``) and
flushes after every other middleware has shut down.
"""

from __future__ import annotations

import threading
from contextvars import Token
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import q_name
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from app.tracing import FLUSH_TIMEOUT_MS, context_from, inject_traceparent, record_error, tracer_from

# (message id, span, token of the attached context) of the attempt a worker thread is running
_Attempt = tuple[str, trace.Span, Token[otel_context.Context]]


class Tracing(dramatiq.Middleware):
    """``provider`` from :func:`app.tracing.setup_tracing`. ``None`` (tracing off): no spans and nothing to
    flush; a message sent while some span is current still gets its context, which costs nothing without one."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer = tracer_from(provider, __name__)
        self._local = threading.local()  # .attempt: this worker thread's _Attempt

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if "traceparent" not in message.options:
            inject_traceparent(message.options)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if self.provider is None:
            return
        options = message.options
        run_id = options.get("run_id")
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "rabbitmq" if isinstance(broker, RabbitmqBroker) else "dramatiq",
            "messaging.operation.type": "process",
            "messaging.destination.name": q_name(message.queue_name),
            "messaging.message.id": message.message_id,
            "punchclock.attempt": int(options.get("retries") or 0) + 1,
        }
        for key in ("run_id", "schedule_id"):
            if options.get(key) is not None:
                attributes[f"punchclock.{key}"] = options[key]
        parent = context_from(options)
        span = self.tracer.start_span(
            f"run {message.actor_name}" if run_id is not None else message.actor_name,
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._local.attempt = (message.message_id, span, token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        span = self._end_attempt(message)
        if span is None:
            return
        if exception is not None:
            record_error(span, exception)
            delay = message.options.get("retry_delay_ms")
            if delay is not None:
                span.set_attribute("punchclock.retry_delay_ms", delay)
        span.end()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        span = self._end_attempt(message)
        if span is not None:
            span.set_attribute("punchclock.skipped", True)
            span.end()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.provider is not None:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.provider is not None:
            self.provider.force_flush(FLUSH_TIMEOUT_MS)

    def _end_attempt(self, message: dramatiq.MessageProxy) -> trace.Span | None:
        """Detach this thread's attempt context and hand back its span, if ``message`` is the one we started
        (a middleware above us may have skipped the message before our ``before_process_message`` ran)."""
        attempt: _Attempt | None = getattr(self._local, "attempt", None)
        if attempt is None or attempt[0] != message.message_id:
            return None
        self._local.attempt = None
        _, span, token = attempt
        otel_context.detach(token)
        return span

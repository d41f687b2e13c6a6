"""OpenTelemetry spans of LLM calls, after the GenAI semantic conventions.

One CLIENT span per call, named ``chat {model}`` / ``embeddings {model}``, retries included (each one an
``llm_retry`` event; the httpx instrumentation, where enabled, adds an HTTP span per attempt below it). Request
attributes are set at the start, where samplers see them; response ones (``gen_ai.response.model``, usage,
``gen_ai.response.finish_reasons``) on success; ``error.type``, status ERROR and the exception on failure.
Prompts and completions (``gen_ai.input.messages``, ``gen_ai.output.messages``) only when the caller asks,
which ``PUNCHCLOCK_TRACE_CONTENT=true`` does. Only the OpenTelemetry API is used: the SDK is set up elsewhere.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from app.ai.config import Endpoint
from app.ai.failures import AttemptFailed
from app.ai.usage import Usage
from app.redaction import redact

TRACER_NAME = "punchclock.ai"


@contextmanager
def genai_span(
    tracer: Tracer, operation: str, endpoint: Endpoint, model: str, *, secrets: Iterable[str]
) -> Iterator[Span]:
    """A span around one call. An :class:`AttemptFailed` leaving it records its (already scrubbed) error and
    ``error_type``; anything else records its class name and a scrubbed message."""
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": endpoint.provider,
        "gen_ai.request.model": model,
        "server.address": endpoint.server_address,
        "server.port": endpoint.server_port,
    }
    with tracer.start_as_current_span(
        f"{operation} {model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except AttemptFailed as failed:
            _record_error(span, failed.error, failed.error_type, secrets)
            raise
        except BaseException as exc:
            _record_error(span, exc, f"{type(exc).__module__}.{type(exc).__qualname__}", secrets)
            raise


def _record_error(span: Span, exc: BaseException, error_type: str, secrets: Iterable[str]) -> None:
    secrets = tuple(secrets)
    message = redact(str(exc), also=secrets)
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message))
    span.record_exception(
        exc,
        attributes={
            "exception.message": message,
            "exception.stacktrace": redact("".join(traceback.format_exception(exc)), also=secrets),
        },
    )


def set_response(span: Span, model: str, usage: Usage, finish_reasons: Sequence[str] | None = None) -> None:
    """Response attributes; ``finish_reasons`` None for embeddings, which have none and no output tokens."""
    span.set_attribute("gen_ai.response.model", model)
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
    if finish_reasons is not None:
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))


def input_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """``gen_ai.input.messages``: OpenAI chat messages as the conventions' ``[{role, parts}]`` JSON."""
    return json.dumps([{"role": m.get("role", "user"), "parts": _parts(m.get("content"))} for m in messages])


def output_messages(text: str, finish_reason: str) -> str:
    """``gen_ai.output.messages``: the assistant's reply as the conventions' JSON."""
    reply = {"role": "assistant", "parts": _parts(text), "finish_reason": finish_reason}
    return json.dumps([reply])


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for item in content if isinstance(content, list) else [content]:
        if isinstance(item, Mapping) and item.get("type") == "text":
            parts.append({"type": "text", "content": str(item.get("text", ""))})
        else:  # images, audio, files: their kind, not their bytes
            parts.append({"type": str(item.get("type", "unknown")) if isinstance(item, Mapping) else "unknown"})
    return parts

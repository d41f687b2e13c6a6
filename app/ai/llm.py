"""The LLM client: OpenAI-compatible chat and embeddings over the worker's one ``httpx.AsyncClient``.

    llm = LLM(http_client, LLMConfig.from_settings(settings))
    answer = await llm.chat([{"role": "user", "content": "Hello"}])   # ChatResult(text, model, …, usage)
    found = await llm.embed(["a text", "another"])                    # EmbeddingResult(vectors, model, usage)

Failures (the table is in :mod:`app.ai.failures`): nothing configured → ConfigurationError naming the variables;
a 4xx → PermanentError with the server's message, at once; timeouts, connection errors, 408/429/5xx are retried
here a few times (:class:`~app.ai.retrying.RetryPolicy`), then raised as TransientError, which the run's Dramatiq
retries take over. Each call is one span (:mod:`app.ai.genai_span`). No answer is ever made up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, TracerProvider
from tenacity import RetryCallState

from app.ai.config import Endpoint, LLMConfig
from app.ai.failures import AttemptFailed, malformed, request_failure, status_failure
from app.ai.genai_span import TRACER_NAME, genai_span, input_messages, output_messages, set_response
from app.ai.retrying import RetryPolicy
from app.ai.usage import Usage

logger = logging.getLogger(__name__)

Messages = str | Sequence[Mapping[str, Any]]
"""OpenAI chat messages (``[{"role": "user", "content": "…"}]``), or one user message's text."""


@dataclass(frozen=True)
class ChatResult:
    """The first choice's text ("" when the model answered with tool calls only: see ``raw``), the model that
    answered, why it stopped (``stop``, ``length``, ``tool_calls``; "" if the server does not say) and usage."""

    text: str
    model: str
    finish_reason: str
    usage: Usage
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class EmbeddingResult:
    """One vector per input text, in the order given."""

    vectors: list[list[float]]
    model: str
    usage: Usage


class LLM:
    """Chat and embeddings for one worker process; safe to share between concurrent coroutines.

    ``http`` is the worker's shared client (never created here); ``retry`` is the client's own retry policy;
    ``tracer_provider`` defaults to the global one.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: LLMConfig,
        *,
        retry: RetryPolicy | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._http = http
        self._config = config
        self._retry = retry or RetryPolicy()
        self._timeout = httpx.Timeout(config.timeout_seconds)
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **extra: Any,
    ) -> ChatResult:
        """One chat completion. ``model`` overrides ``PUNCHCLOCK_LLM_MODEL``; ``extra`` goes into the request body
        as is (``response_format``, ``tools``, ``seed``…); streaming is not supported."""
        endpoint = self._config.chat
        chosen = endpoint.model_for(model)
        if extra.get("stream"):
            raise ValueError("stream=True is not supported: chat() returns the whole answer")
        conversation = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        body: dict[str, Any] = {**extra, "model": chosen, "messages": conversation}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        try:
            with genai_span(self._tracer, "chat", endpoint, chosen, secrets=self._config.secrets) as span:
                if temperature is not None:
                    span.set_attribute("gen_ai.request.temperature", temperature)
                if max_tokens is not None:
                    span.set_attribute("gen_ai.request.max_tokens", max_tokens)
                if self._config.trace_content:
                    span.set_attribute("gen_ai.input.messages", input_messages(conversation))
                answer = await self._post(span, endpoint, "chat/completions", body)
                result, finish_reasons = _chat_result(endpoint, answer, chosen)
                set_response(span, result.model, result.usage, finish_reasons)
                if self._config.trace_content:
                    span.set_attribute("gen_ai.output.messages", output_messages(result.text, result.finish_reason))
                return result
        except AttemptFailed as failed:
            raise failed.error from None

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> EmbeddingResult:
        """Vectors for ``texts``, in one request (mind the provider's batch limit: DashScope takes 10 inputs).
        ``model`` overrides ``PUNCHCLOCK_EMBEDDING_MODEL``."""
        endpoint = self._config.embeddings
        chosen = endpoint.model_for(model)
        inputs = [texts] if isinstance(texts, str) else list(texts)
        if not inputs:
            return EmbeddingResult([], chosen, Usage())
        try:
            with genai_span(self._tracer, "embeddings", endpoint, chosen, secrets=self._config.secrets) as span:
                answer = await self._post(span, endpoint, "embeddings", {"model": chosen, "input": inputs})
                result = _embedding_result(endpoint, answer, chosen, len(inputs))
                set_response(span, result.model, result.usage)
                span.set_attribute("gen_ai.embeddings.dimension.count", len(result.vectors[0]))
                return result
        except AttemptFailed as failed:
            raise failed.error from None

    async def _post(self, span: Span, endpoint: Endpoint, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with the client's retries; the JSON object answered, or the last AttemptFailed."""
        url = endpoint.url(path)

        def before_sleep(state: RetryCallState) -> None:
            failed = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            error_type = failed.error_type if isinstance(failed, AttemptFailed) else "unknown"
            span.add_event(
                "llm_retry", {"attempt": state.attempt_number, "wait_seconds": wait, "error.type": error_type}
            )
            logger.warning(
                str(failed),
                extra={"action": "llm_retry", "endpoint": path, "attempt": state.attempt_number, "wait_seconds": wait},
            )

        retrying = self._retry.retrying(before_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(endpoint, url, body)
        except AttemptFailed as failed:
            raise failed.gave_up(retrying.statistics.get("attempt_number", 1)) from None
        raise AssertionError("tenacity ended without a result or an error")

    async def _attempt(self, endpoint: Endpoint, url: httpx.URL, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(url, json=body, headers=endpoint.headers(), timeout=self._timeout)
        except httpx.RequestError as exc:
            raise request_failure(endpoint, exc, url, self._config.timeout_seconds) from None
        if not response.is_success:
            raise status_failure(endpoint, response, now=datetime.now(UTC))
        try:
            answer = response.json()
        except ValueError:
            kind = response.headers.get("content-type") or "no content type"
            raise malformed(endpoint, f"with {kind.split(';')[0]}, not JSON") from None
        if not isinstance(answer, dict):
            raise malformed(endpoint, "with JSON that is not an object")
        return answer


def _chat_result(endpoint: Endpoint, answer: dict[str, Any], requested: str) -> tuple[ChatResult, list[str]]:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise malformed(endpoint, "with no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    finish_reasons = [str(choice.get("finish_reason") or "") for choice in choices]
    result = ChatResult(
        text=content if isinstance(content, str) else "",
        model=str(answer.get("model") or requested),
        finish_reason=finish_reasons[0],
        usage=_usage(answer),
        raw=answer,
    )
    return result, [reason for reason in finish_reasons if reason]


def _embedding_result(endpoint: Endpoint, answer: dict[str, Any], requested: str, count: int) -> EmbeddingResult:
    data = answer.get("data")
    if not isinstance(data, list) or len(data) != count:
        raise malformed(endpoint, f"without one embedding for each of the {count} inputs")
    items = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
    vectors = [item.get("embedding") if isinstance(item, dict) else None for item in items]
    if not all(isinstance(vector, list) and vector for vector in vectors):
        raise malformed(endpoint, "with an embedding that is not a list of numbers")
    return EmbeddingResult(
        vectors=[[float(x) for x in vector] for vector in vectors if isinstance(vector, list)],
        model=str(answer.get("model") or requested),
        usage=_usage(answer),
    )


def _usage(answer: dict[str, Any]) -> Usage:
    """OpenAI's ``prompt_tokens`` / ``completion_tokens``; 0 where the server reports none."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return Usage(
        input_tokens=prompt if isinstance(prompt, int) else 0,
        output_tokens=completion if isinstance(completion, int) else 0,
    )

"""The LLM client against a loopback OpenAI-compatible server: answers, retries, failures, spans, secrets."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.ai import LLM, LLMConfig, RetryPolicy, Usage
from app.errors import ConfigurationError
from app.settings import Settings
from app.transient import PermanentError, TransientError, classify
from tests.fakes.openai_server import Answer, Error, FakeOpenAI, Hang

SECRET = "sk-test-5ecret-0123456789abcdef"
QUICK = RetryPolicy(attempts=3, min_wait_seconds=0.01, max_wait_seconds=5)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": base_url,
        "llm_api_key": SECRET,
        "llm_model": "fake-chat",
        "embedding_model": "fake-embed",
        **overrides,
    }
    return Settings(**values)


def client(http: httpx.AsyncClient, provider: TracerProvider, config: Settings, retry: RetryPolicy = QUICK) -> LLM:
    return LLM(http, LLMConfig.from_settings(config), retry=retry, tracer_provider=provider)


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


def exported(exporter: InMemorySpanExporter) -> str:
    return "\n".join(span.to_json() for span in exporter.get_finished_spans())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_chat_returns_the_text_and_usage_in_a_genai_span(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Answer("Good morning", input_tokens=12, output_tokens=3))
    llm = client(http, provider, settings(server.base_url))

    result = await llm.chat([{"role": "user", "content": "Say good morning"}], temperature=0.2, max_tokens=50)

    assert (result.text, result.model, result.finish_reason) == ("Good morning", "fake-chat", "stop")
    assert result.usage == Usage(input_tokens=12, output_tokens=3)
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body == {
        "model": "fake-chat",
        "messages": [{"role": "user", "content": "Say good morning"}],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    span = only_span(exporter)
    assert (span.name, span.kind) == ("chat fake-chat", SpanKind.CLIENT)
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "punchclock.ai"
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fake-chat",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": "fake-chat",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("stop",),
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_a_plain_string_is_one_user_message_and_the_model_can_be_chosen_per_call(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    result = await client(http, provider, settings(server.base_url)).chat("Hi", model="other-model")

    assert result.model == "other-model"
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "Hi"}]
    assert only_span(exporter).name == "chat other-model"


async def test_usage_adds_up_over_calls(server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider) -> None:
    server.enqueue(Answer(input_tokens=7, output_tokens=2), Answer(input_tokens=5, output_tokens=4))
    llm = client(http, provider, settings(server.base_url))

    results = [await llm.chat("one"), await llm.chat("two")]

    assert sum((result.usage for result in results), Usage()) == Usage(input_tokens=12, output_tokens=6)


async def test_429_with_retry_after_waits_then_succeeds(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Error(429, "Rate limit reached for requests", retry_after="1"), Answer("after the wait"))

    result = await client(http, provider, settings(server.base_url)).chat("Hi")

    assert result.text == "after the wait"
    first, second = server.requests
    assert second.received_at - first.received_at >= 1.0
    span = only_span(exporter)
    [retry] = span.events
    assert retry.name == "llm_retry"
    assert dict(retry.attributes or {})["error.type"] == "429"
    assert span.status.status_code is StatusCode.UNSET


async def test_a_retry_after_longer_than_the_client_waits_goes_to_the_run_retries(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider
) -> None:
    server.enqueue(Error(429, "Rate limit reached", retry_after="120"))

    with pytest.raises(TransientError) as raised:
        await client(http, provider, settings(server.base_url)).chat("Hi")

    assert len(server.requests) == 1
    assert raised.value.retry_after == 120
    assert classify(raised.value, retry_timeouts=False).retry_after == 120


async def test_400_fails_at_once_with_the_server_message(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Error(400, 'model "x" does not exist'))

    with pytest.raises(PermanentError) as raised:
        await client(http, provider, settings(server.base_url)).chat("Hi", model="x")

    assert str(raised.value) == 'LLM answered 400 Bad Request: model "x" does not exist'
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(server.requests) == 1
    assert not classify(raised.value, retry_timeouts=True).transient
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "400"
    [event] = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.message"] == str(raised.value)


async def test_server_errors_are_retried_then_raised_as_transient(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider
) -> None:
    server.enqueue(Error(500, "boom"), Error(502, "bad gateway"), Error(503, "overloaded"))

    with pytest.raises(TransientError) as raised:
        await client(http, provider, settings(server.base_url)).chat("Hi")

    assert str(raised.value) == "LLM answered 503 Service Unavailable: overloaded (gave up after 3 attempts)"
    assert len(server.requests) == 3


async def test_a_hanging_server_times_out_as_a_transient_error(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Hang(30), Hang(30))
    llm = client(http, provider, settings(server.base_url, llm_timeout_seconds=1), RetryPolicy(2, 0.01, 1))

    with pytest.raises(TransientError) as raised:
        await llm.chat("Hi")

    assert "timed out after 1 s" in str(raised.value)
    assert "gave up after 2 attempts" in str(raised.value)
    assert len(server.requests) == 2
    span = only_span(exporter)
    assert (span.attributes or {})["error.type"] == "timeout"
    assert span.status.status_code is StatusCode.ERROR


async def test_no_llm_configured_names_the_variables_to_set(
    http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    llm = LLM(http, LLMConfig.from_settings(Settings()), tracer_provider=provider)

    with pytest.raises(ConfigurationError) as raised:
        await llm.chat("Hi")
    for variable in ("PUNCHCLOCK_LLM_BASE_URL", "PUNCHCLOCK_LLM_MODEL", "PUNCHCLOCK_LLM_API_KEY"):
        assert variable in str(raised.value)
    with pytest.raises(ConfigurationError, match="PUNCHCLOCK_EMBEDDING_BASE_URL and PUNCHCLOCK_EMBEDDING_MODEL"):
        await llm.embed(["text"])
    assert exporter.get_finished_spans() == ()


async def test_no_model_configured_names_the_model_variable(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider
) -> None:
    llm = client(http, provider, settings(server.base_url, llm_model="", embedding_model=""))

    with pytest.raises(ConfigurationError, match=r"no LLM configured: set PUNCHCLOCK_LLM_MODEL$"):
        await llm.chat("Hi")
    with pytest.raises(ConfigurationError, match=r"no embedding model configured: set PUNCHCLOCK_EMBEDDING_MODEL$"):
        await llm.embed(["text"])
    assert server.requests == []


async def test_the_api_key_is_sent_but_never_shown(
    server: FakeOpenAI,
    http: httpx.AsyncClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.enqueue(Error(503, f"upstream rejected key {SECRET}"), Error(401, f"Incorrect API key provided: {SECRET}"))
    errors: list[BaseException] = []

    with pytest.raises(PermanentError) as rejected:
        await client(http, provider, settings(server.base_url)).chat("Hi")
    errors.append(rejected.value)
    port = closed_port()
    unreachable = f"http://user:{SECRET}@127.0.0.1:{port}/v1?api-key={SECRET}"
    with pytest.raises(TransientError) as refused:
        await client(http, provider, settings(unreachable), RetryPolicy(2, 0.01, 1)).chat("Hi")
    errors.append(refused.value)

    assert all(request.headers["authorization"] == f"Bearer {SECRET}" for request in server.requests)
    assert str(rejected.value) == (
        "LLM answered 401 Unauthorized: Incorrect API key provided: *** (check PUNCHCLOCK_LLM_API_KEY)"
    )
    assert str(refused.value).startswith(
        f"LLM request to http://127.0.0.1:{port}/v1/chat/completions failed: ConnectError"
    )
    for error in errors:
        assert SECRET not in str(error) and SECRET not in repr(error.args)
    spans = exported(exporter)
    assert "Incorrect API key provided" in spans and "ConnectError" in spans  # the errors are there, scrubbed
    assert SECRET not in spans
    assert [record.__dict__["action"] for record in caplog.records if record.name == "app.ai.llm"] == ["llm_retry"] * 2
    assert all(SECRET not in str(record.__dict__) for record in caplog.records)
    assert SECRET not in repr(LLMConfig.from_settings(settings(server.base_url)))


async def test_content_is_traced_only_when_asked(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Answer("Bonjour"), Answer("Bonjour"))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet me in French"}]

    await client(http, provider, settings(server.base_url)).chat(messages)
    await client(http, provider, settings(server.base_url, trace_content=True)).chat(messages)

    quiet, verbose = exporter.get_finished_spans()
    assert "Greet me" not in quiet.to_json() and "Bonjour" not in quiet.to_json()
    attributes = verbose.attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Greet me in French"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Bonjour"}], "finish_reason": "stop"}
    ]


async def test_embeddings(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    server.enqueue(Answer(input_tokens=4))

    result = await client(http, provider, settings(server.base_url)).embed(["first text", "second text"])

    assert result.vectors == [server.vector("first text"), server.vector("second text")]
    assert (result.model, result.usage) == ("fake-embed", Usage(input_tokens=4))
    [request] = server.requests
    assert (request.path, request.body) == (
        "/v1/embeddings",
        {"model": "fake-embed", "input": ["first text", "second text"]},
    )
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    span = only_span(exporter)
    assert (span.name, span.kind) == ("embeddings fake-embed", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == 4
    assert attributes["gen_ai.embeddings.dimension.count"] == server.dimensions
    assert "gen_ai.usage.output_tokens" not in attributes


async def test_embeddings_from_another_provider_do_not_get_the_llm_key(
    server: FakeOpenAI, http: httpx.AsyncClient, provider: TracerProvider
) -> None:
    with FakeOpenAI() as embeddings:
        config = settings("https://api.openai.com/v1", embedding_base_url=embeddings.base_url)
        await client(http, provider, config).embed(["text"])

        assert "authorization" not in embeddings.requests[0].headers

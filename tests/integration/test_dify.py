"""The Dify client against a loopback Dify Service API (tests/fakes/dify_server.py): real sockets, real HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tenacity import wait_none

from app.ai.dify import DifyApp, DifyClient, DifyWorkflowFailed
from app.errors import ConfigurationError
from app.transient import PermanentError, TransientError
from tests.fakes.dify_server import Fail, FakeDify, Hang, HttpError, Succeed

KEY = "app-s3cr3t-weather-key-0123456789"
KEY_ENV = "DIFY_WEATHER_KEY"


def weather(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"summary": f"weather in {inputs['city']}"}


@pytest.fixture
def dify() -> Iterator[FakeDify]:
    with FakeDify(key=KEY, default=Succeed(outputs=weather, total_tokens=321, elapsed_time=2.5)) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def make_client(
    http: httpx.AsyncClient,
    dify: FakeDify,
    spans: InMemorySpanExporter,
    *,
    environ: dict[str, str] | None = None,
    timeout: float = 10.0,
    attempts: int = 3,
) -> DifyClient:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = DifyApp("weather", dify.base_url, KEY_ENV, timeout=timeout)
    return DifyClient(
        http,
        {"weather": app},
        {KEY_ENV: KEY} if environ is None else environ,
        attempts=attempts,
        backoff=wait_none(),
        tracer_provider=provider,
    )


def span_text(span: ReadableSpan) -> str:
    """Everything a span exports, as text: name, attributes, status, events and their attributes."""
    parts = [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
    for event in span.events:
        parts += [event.name, repr(dict(event.attributes or {}))]
    return "\n".join(parts)


async def test_succeeded_maps_outputs_tokens_elapsed_time_and_run_id(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans)

    result = await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    status, answer = dify.answers[-1]
    assert status == 200
    assert result.workflow_run_id == answer["workflow_run_id"]
    assert result.status == "succeeded"
    assert result.outputs == {"summary": "weather in Beijing"}
    assert result.error is None
    assert result.total_tokens == 321
    assert result.elapsed_time == 2.5
    assert result.total_steps == 3
    request = dify.requests[-1]
    assert request.path == "/v1/workflows/run"
    assert request.body == {"inputs": {"city": "Beijing"}, "response_mode": "blocking", "user": "weather-beijing"}
    (span,) = spans.get_finished_spans()
    assert span.name == "dify weather"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "dify.app": "weather",
        "server.address": "127.0.0.1",
        "server.port": int(dify.base_url.rsplit(":", 1)[1]),
        "dify.workflow_run_id": result.workflow_run_id,
        "dify.status": "succeeded",
        "dify.total_tokens": 321,
        "dify.elapsed_time": 2.5,
        "dify.total_steps": 3,
    }


async def test_failed_raises_with_difys_error_and_is_not_retried(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans)
    dify.script(Fail(error="Node HTTP Request run failed: 502 Bad Gateway"))

    with pytest.raises(DifyWorkflowFailed) as caught:
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    run_id = dify.answers[-1][1]["workflow_run_id"]
    assert caught.value.workflow_run_id == run_id
    assert caught.value.status == "failed"
    assert caught.value.error == "Node HTTP Request run failed: 502 Bad Gateway"
    assert str(caught.value) == (
        f'Dify app "weather": workflow run {run_id} failed: Node HTTP Request run failed: 502 Bad Gateway'
    )
    assert isinstance(caught.value, PermanentError)
    assert len(dify.requests) == 1
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["dify.status"] == "failed"
    assert (span.attributes or {})["dify.workflow_run_id"] == run_id


async def test_stopped_fails_too(http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter) -> None:
    client = make_client(http, dify, spans)
    dify.script(Fail(error="Workflow stopped by user", status="stopped"))

    with pytest.raises(DifyWorkflowFailed, match="stopped: Workflow stopped by user"):
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")


async def test_two_schedules_each_send_their_own_inputs_and_user(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans)

    beijing = await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")
    shanghai = await client.run_workflow("weather", {"city": "Shanghai"}, user="weather-shanghai")

    assert [(r.inputs, r.user) for r in dify.requests] == [
        ({"city": "Beijing"}, "weather-beijing"),
        ({"city": "Shanghai"}, "weather-shanghai"),
    ]
    assert beijing.outputs == {"summary": "weather in Beijing"}
    assert shanghai.outputs == {"summary": "weather in Shanghai"}
    assert beijing.workflow_run_id != shanghai.workflow_run_id


async def test_wrong_key_is_a_permanent_error_naming_the_app_not_the_key(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    wrong = "app-wrong-key-9876543210"
    client = make_client(http, dify, spans, environ={KEY_ENV: wrong})

    with pytest.raises(PermanentError) as caught:
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert str(caught.value) == 'Dify app "weather": HTTP 401: unauthorized: Access token is invalid'
    assert wrong not in str(caught.value)
    assert len(dify.requests) == 1  # not retried
    assert dify.requests[0].headers["authorization"] == f"Bearer {wrong}"


async def test_missing_key_variable_names_the_variable(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans, environ={})

    with pytest.raises(ConfigurationError) as caught:
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert str(caught.value) == 'Dify app "weather": set DIFY_WEATHER_KEY to its app-… API key'
    assert dify.requests == []


async def test_server_error_then_success_succeeds(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans)
    dify.script(HttpError(500), HttpError(429, "too_many_requests", "App quota exceeded", retry_after="0"))

    result = await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert result.outputs == {"summary": "weather in Beijing"}
    assert [status for status, _ in dify.answers] == [500, 429, 200]
    assert all(r.body == dify.requests[0].body for r in dify.requests)


async def test_server_errors_past_the_attempts_are_transient(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans, attempts=2)
    dify.script(HttpError(503, "service_unavailable", "down for upgrade"), HttpError(503, message="still down"))

    with pytest.raises(TransientError) as caught:
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert str(caught.value) == 'Dify app "weather": HTTP 503: internal_server_error: still down'
    assert len(dify.requests) == 2
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "TransientError"


async def test_a_long_retry_after_is_left_to_the_runs_retry_policy(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans)
    dify.script(HttpError(429, "too_many_requests", "rate limited", retry_after="120"))

    with pytest.raises(TransientError) as caught:
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert caught.value.retry_after == 120.0
    assert len(dify.requests) == 1


async def test_a_hanging_server_is_a_transient_timeout(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter
) -> None:
    client = make_client(http, dify, spans, timeout=0.3, attempts=2)
    dify.script(Hang(), Hang())

    with pytest.raises(TransientError, match=r'^Dify app "weather": ReadTimeout'):
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert len(dify.requests) == 2


async def test_the_key_is_sent_but_appears_in_no_error_log_or_span(
    http: httpx.AsyncClient, dify: FakeDify, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(http, dify, spans, attempts=2)
    # a server that echoes the key back in its errors, the worst case
    dify.script(
        HttpError(500, message=f"upstream rejected Bearer {KEY}", retry_after="0"),
        HttpError(400, "invalid_param", f"bad request with {KEY}"),
        Fail(error=f"node failed, token {KEY}"),
    )
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            with pytest.raises(PermanentError) as caught:
                await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")
            errors.append(str(caught.value))
        await client.run_workflow("weather", {"city": "Beijing"}, user="weather-beijing")

    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in dify.requests)
    assert len(dify.requests) == 4
    assert errors == [
        'Dify app "weather": HTTP 400: invalid_param: bad request with ***',
        f'Dify app "weather": workflow run {dify.answers[2][1]["workflow_run_id"]} failed: node failed, token ***',
    ]
    assert "dify_retrying" in [getattr(r, "action", None) for r in caplog.records]
    assert KEY not in caplog.text
    assert KEY not in repr([r.__dict__ for r in caplog.records])
    exported = "\n".join(span_text(span) for span in spans.get_finished_spans())
    assert len(spans.get_finished_spans()) == 3
    assert "***" in exported
    assert KEY not in exported

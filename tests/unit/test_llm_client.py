"""Protocol edge cases of the LLM client, served by httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.ai import LLM, LLMConfig, RetryPolicy, Usage
from app.settings import Settings
from app.transient import PermanentError, TransientError

SETTINGS = Settings(llm_base_url="http://llm.test/v1", llm_model="m", embedding_model="e")


def llm(handler: Callable[[httpx.Request], httpx.Response], retry: RetryPolicy | None = None) -> LLM:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return LLM(http, LLMConfig.from_settings(SETTINGS), retry=retry or RetryPolicy(1, 0, 0))


def answer(body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=body)


async def test_no_key_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})

    result = await llm(handler).chat("Hi")

    assert "authorization" not in seen[0].headers
    assert (result.text, result.model, result.usage) == ("hi", "m", Usage())  # no usage reported: 0, model: asked


async def test_tool_calls_answer_no_text() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]}
    body = {"model": "m-2024", "choices": [{"message": message, "finish_reason": "tool_calls"}]}

    result = await llm(answer(body)).chat("Hi", tools=[{"type": "function"}])

    assert (result.text, result.finish_reason, result.model) == ("", "tool_calls", "m-2024")
    assert result.raw["choices"][0]["message"]["tool_calls"][0]["id"] == "1"


async def test_extra_arguments_go_into_the_body_but_cannot_replace_model_or_messages() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "{}"}}]})

    result = await llm(handler).chat("Hi", response_format={"type": "json_object"}, seed=7)

    assert seen[0] == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_object"},
        "seed": 7,
    }
    assert result.finish_reason == ""


async def test_streaming_is_refused() -> None:
    with pytest.raises(ValueError, match="stream=True is not supported"):
        await llm(answer({})).chat("Hi", stream=True)


@pytest.mark.parametrize(
    ("response", "complaint"),
    [
        (
            httpx.Response(200, text="<html>proxy</html>", headers={"content-type": "text/html"}),
            "with text/html, not JSON",
        ),
        (httpx.Response(200, json=[]), "JSON that is not an object"),
        (httpx.Response(200, json={"choices": []}), "with no choices"),
    ],
)
async def test_a_200_that_is_not_a_completion_is_permanent(response: httpx.Response, complaint: str) -> None:
    with pytest.raises(PermanentError, match=complaint):
        await llm(lambda request: response, RetryPolicy(3, 0, 0)).chat("Hi")


async def test_embeddings_come_back_in_input_order() -> None:
    body = {
        "data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}],
        "usage": {"prompt_tokens": 3},
    }

    result = await llm(answer(body)).embed(["first", "second"])

    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert (result.model, result.usage) == ("e", Usage(input_tokens=3))


async def test_embeddings_of_nothing_make_no_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    assert (await llm(handler).embed([])).vectors == []


async def test_a_missing_embedding_is_permanent() -> None:
    with pytest.raises(PermanentError, match="without one embedding for each of the 2 inputs"):
        await llm(answer({"data": [{"index": 0, "embedding": [1]}]})).embed(["a", "b"])


async def test_connection_errors_are_retried_then_transient() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("All connection attempts failed", request=request)

    with pytest.raises(
        TransientError, match=r"ConnectError: All connection attempts failed \(gave up after 3 attempts\)"
    ):
        await llm(handler, RetryPolicy(3, 0, 0)).chat("Hi")
    assert len(calls) == 3

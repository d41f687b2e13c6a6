"""The Dify client's configuration checks and HTTP edge cases, on ``httpx.MockTransport``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tenacity import wait_none

from app.ai.dify import DifyApp, DifyClient, DifyWorkflowFailed
from app.errors import InvalidInput
from app.transient import PermanentError, TransientError

KEY = "app-unit-key-abcdef"
BASE = "https://dify.example.com"


def reply(status: str = "succeeded", **data: Any) -> dict[str, Any]:
    return {
        "task_id": "t-1",
        "workflow_run_id": "run-1",
        "data": {"id": "run-1", "status": status, "outputs": {"answer": 42}, "error": None, "total_tokens": 9, **data},
    }


def client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> DifyClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    apps = {"report": DifyApp("report", BASE, "DIFY_REPORT_KEY"), "brief": DifyApp("brief", BASE, "DIFY_BRIEF_KEY")}
    return DifyClient(http, apps, {"DIFY_REPORT_KEY": KEY}, backoff=wait_none(), **kwargs)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (DifyApp("", BASE, "K"), 'Dify app name "": use 1-64 letters'),
        (DifyApp("we ather", BASE, "K"), 'Dify app name "we ather"'),
        (DifyApp("w", "api.dify.ai", "K"), 'Dify app "w": base URL "api.dify.ai" must be http(s)://host'),
        (DifyApp("w", "ftp://api.dify.ai", "K"), "must be http(s)://host"),
        (DifyApp("w", "https://u:p@api.dify.ai", "K"), "must not carry credentials; put the key in K"),
        (DifyApp("w", "https://api.dify.ai?x=1", "K"), "must have no query or fragment"),
        (DifyApp("w", "https://api.dify.ai/v1", "K"), "ends with /v1; drop it, the client appends /v1/..."),
        (DifyApp("w", "https://api.dify.ai/v1/", "K"), "ends with /v1"),
        (DifyApp("w", BASE, "app-123abc"), 'key variable "app-123abc" is not an environment variable name'),
        (DifyApp("w", BASE, "K", timeout=0), "timeout=0: must be more than 0 seconds"),
    ],
)
def test_validate_names_the_bad_field(app: DifyApp, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        app.validate()


@pytest.mark.parametrize("base", ["https://api.dify.ai", "http://127.0.0.1:5001/", "https://example.com/dify"])
def test_validate_accepts_service_api_roots(base: str) -> None:
    DifyApp("weather-daily_1", base, "DIFY_WEATHER_KEY").validate()
    assert DifyApp("w", base, "K").workflow_run_url == base.rstrip("/") + "/v1/workflows/run"


def test_apps_are_validated_and_registered_under_their_own_name() -> None:
    http = httpx.AsyncClient()
    with pytest.raises(InvalidInput, match="ends with /v1"):
        DifyClient(http, {"w": DifyApp("w", "https://api.dify.ai/v1", "K")}, {})
    with pytest.raises(InvalidInput, match='"w" is configured under the name "x"'):
        DifyClient(http, {"x": DifyApp("w", BASE, "K")}, {})


async def test_unknown_app_lists_the_configured_ones() -> None:
    dify = client(lambda request: httpx.Response(200, json=reply()))
    with pytest.raises(InvalidInput, match=r'^unknown Dify app "weather": configured apps are "brief", "report"$'):
        await dify.run_workflow("weather", {}, user="s")
    empty = DifyClient(httpx.AsyncClient(), {}, {})
    with pytest.raises(InvalidInput, match="configured apps are none"):
        await empty.run_workflow("weather", {}, user="s")


async def test_request_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=reply(status="partial-succeeded"))

    result = await client(handler).run_workflow("report", {"day": "2026-05-01"}, user="daily-report")

    (request,) = seen
    assert str(request.url) == f"{BASE}/v1/workflows/run"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "inputs": {"day": "2026-05-01"},
        "response_mode": "blocking",
        "user": "daily-report",
    }
    assert (result.status, result.outputs, result.total_tokens) == ("partial-succeeded", {"answer": 42}, 9)
    assert (result.elapsed_time, result.total_steps) == (None, None)


async def test_empty_user_is_refused() -> None:
    with pytest.raises(InvalidInput, match="user must not be empty"):
        await client(lambda request: httpx.Response(200, json=reply())).run_workflow("report", {}, user="")


async def test_an_unfinished_status_fails_the_run() -> None:
    dify = client(lambda request: httpx.Response(200, json=reply(status="paused")))
    with pytest.raises(DifyWorkflowFailed, match="workflow run run-1 paused: no error message"):
        await dify.run_workflow("report", {}, user="s")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>Dify</html>"),
        httpx.Response(200, json={"result": "ok"}),
        httpx.Response(200, json=reply(outputs=["not", "an", "object"])),
    ],
)
async def test_a_reply_that_is_not_a_workflow_run_is_permanent(response: httpx.Response) -> None:
    dify = client(lambda request: response)
    with pytest.raises(PermanentError, match=r'^Dify app "report": HTTP 200 is not a blocking workflow reply'):
        await dify.run_workflow("report", {}, user="s")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(400, json={"code": "app_unavailable", "message": "App unavailable", "status": 400}),
         "HTTP 400: app_unavailable: App unavailable"),
        (httpx.Response(404, text=""), "HTTP 404: Not Found"),
        (httpx.Response(301, headers={"Location": "https://elsewhere"}), "HTTP 301: Moved Permanently"),
    ],
)  # fmt: skip
async def test_client_errors_fail_at_once_with_difys_message(response: httpx.Response, message: str) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return response

    with pytest.raises(PermanentError) as caught:
        await client(handler).run_workflow("report", {}, user="s")

    assert not isinstance(caught.value, DifyWorkflowFailed)
    assert str(caught.value) == f'Dify app "report": {message}'
    assert len(calls) == 1


async def test_connection_errors_are_retried_then_transient() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransientError, match=r'^Dify app "report": ConnectError: connection refused$') as caught:
        await client(handler, attempts=3).run_workflow("report", {}, user="s")

    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no request (and header) chained
    assert len(calls) == 3


async def test_retry_after_is_waited_between_attempts() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json=reply())])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    result = await client(lambda request: next(answers), sleep=sleep).run_workflow("report", {}, user="s")

    assert result.workflow_run_id == "run-1"
    assert waits == [2.0]

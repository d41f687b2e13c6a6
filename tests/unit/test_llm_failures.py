"""How one failed LLM request is classified and worded: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.ai import Endpoint, RetryPolicy
from app.ai.failures import request_failure, server_message, status_failure
from app.errors import ConfigurationError
from app.transient import PermanentError, TransientError

KEY = "sk-unit-secret"
ENDPOINT = Endpoint("LLM", "PUNCHCLOCK_LLM", "https://api.example.com/v1", KEY, "m")
URL = httpx.URL("https://api.example.com/v1/chat/completions?api-key=sk-query")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def response(
    status: int, body: Any = None, *, text: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("POST", URL)
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"error": {"message": 'model "x" does not exist', "type": "invalid_request_error"}},
            'model "x" does not exist',
        ),
        ({"error": "model 'llama9' not found"}, "model 'llama9' not found"),  # Ollama
        ({"message": "Input too long", "code": "InvalidParameter"}, "Input too long"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"error": {"message": f"bad key {KEY}\n\n  try again"}}, "bad key *** try again"),
        ([1, 2], ""),
    ],
)
def test_server_message(body: Any, message: str) -> None:
    assert server_message(response(400, body), KEY) == message


def test_server_message_of_a_plain_or_html_body() -> None:
    assert server_message(response(502, text="upstream down"), KEY) == "upstream down"
    assert server_message(response(502, text="<html>x</html>", headers={"content-type": "text/html"}), KEY) == ""
    assert len(server_message(response(400, {"error": "x" * 2000}), KEY)) == 500


def test_a_4xx_is_permanent_with_the_server_message() -> None:
    failed = status_failure(ENDPOINT, response(400, {"error": {"message": 'model "x" does not exist'}}), now=NOW)

    assert isinstance(failed.error, PermanentError)
    assert str(failed.error) == 'LLM answered 400 Bad Request: model "x" does not exist'
    assert (failed.transient, failed.error_type) == (False, "400")


def test_401_and_404_say_which_setting_to_check() -> None:
    unauthorized = status_failure(ENDPOINT, response(401, {"error": {"message": f"Incorrect key {KEY}"}}), now=NOW)
    missing = status_failure(ENDPOINT, response(404, text="404 page not found"), now=NOW)

    assert str(unauthorized.error) == (
        "LLM answered 401 Unauthorized: Incorrect key *** (check PUNCHCLOCK_LLM_API_KEY)"
    )
    assert str(missing.error).startswith(
        "LLM answered 404 Not Found: 404 page not found (check PUNCHCLOCK_LLM_BASE_URL"
    )


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_408_429_and_5xx_are_transient(status: int) -> None:
    failed = status_failure(ENDPOINT, response(status, {"error": {"message": "busy"}}), now=NOW)

    assert isinstance(failed.error, TransientError)
    assert failed.transient and failed.retry_after is None
    assert failed.error_type == str(status)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    seconds = status_failure(ENDPOINT, response(429, {}, headers={"Retry-After": "7"}), now=NOW)
    date = status_failure(
        ENDPOINT, response(503, {}, headers={"Retry-After": "Sat, 01 Jun 2024 12:00:30 GMT"}), now=NOW
    )

    assert (seconds.retry_after, date.retry_after) == (7.0, 30.0)


def test_gave_up_counts_attempts_of_transient_failures_only() -> None:
    transient = status_failure(ENDPOINT, response(429, {}, headers={"Retry-After": "7"}), now=NOW)
    permanent = status_failure(ENDPOINT, response(400, {}), now=NOW)

    assert str(transient.gave_up(3).error) == "LLM answered 429 Too Many Requests (gave up after 3 attempts)"
    assert transient.gave_up(3).retry_after == 7.0
    assert transient.gave_up(1) is transient
    assert permanent.gave_up(3) is permanent


def test_timeouts_and_connection_errors_are_transient_and_show_no_query_value() -> None:
    request = httpx.Request("POST", URL)
    timeout = request_failure(ENDPOINT, httpx.ReadTimeout("timed out", request=request), URL, 60)
    refused = request_failure(ENDPOINT, httpx.ConnectError(f"refused {URL}", request=request), URL, 60)

    assert str(timeout.error) == (
        "LLM request to https://api.example.com/v1/chat/completions timed out after 60 s (ReadTimeout)"
    )
    assert (timeout.transient, timeout.error_type) == (True, "timeout")
    assert str(refused.error) == (
        "LLM request to https://api.example.com/v1/chat/completions failed: ConnectError:"
        " refused https://api.example.com/v1/chat/completions?api-key=***"
    )
    assert (refused.transient, refused.error_type) == (True, "httpx.ConnectError")


def test_a_url_httpx_cannot_use_is_a_configuration_error() -> None:
    failed = request_failure(ENDPOINT, httpx.UnsupportedProtocol("Request URL has an unsupported protocol"), URL, 60)

    assert isinstance(failed.error, ConfigurationError)
    assert "PUNCHCLOCK_LLM_BASE_URL" in str(failed.error)
    assert not failed.transient


def test_retry_waits_back_off_and_honour_retry_after() -> None:
    policy = RetryPolicy(attempts=4, min_wait_seconds=1, max_wait_seconds=10)

    assert [policy.wait_seconds(n, None, 0.0) for n in range(5)] == [1, 2, 4, 8, 10]
    assert policy.wait_seconds(0, None, 0.5) == 1.5
    assert policy.wait_seconds(0, 3.0, 0.5) == 3.0
    assert policy.wait_seconds(3, 3.0, 0.0) == 8


@pytest.mark.parametrize(("attempts", "low", "high"), [(0, 1, 2), (3, -1, 2), (3, 3, 2)])
def test_retry_policy_rejects_nonsense(attempts: int, low: float, high: float) -> None:
    with pytest.raises(ValueError, match=r"must be 1 or more|need 0 <= min <= max"):
        RetryPolicy(attempts, low, high)

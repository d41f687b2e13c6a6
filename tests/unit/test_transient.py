"""The transient/permanent classification and the retry delays: pure, time and jitter passed in."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from dramatiq.errors import Retry
from dramatiq.middleware import TimeLimitExceeded

from app.errors import ConfigurationError, InvalidCron
from app.transient import (
    MAX_RETRY_DELAY_MS,
    PermanentError,
    TransientError,
    Verdict,
    backoff_ms,
    classify,
    retry_after_seconds,
    retry_delay_ms,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REQUEST = httpx.Request("GET", "https://api.example.test/v1/run?key=secret")


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.HTTPStatusError("boom", request=REQUEST, response=response)


def http_date(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        ConnectionResetError(),
        TimeoutError(),
        socket.gaierror("name not known"),
        OSError("network unreachable"),
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.RemoteProtocolError("peer closed", request=REQUEST),
        TransientError("try later"),
        RuntimeError("a flaky SDK"),
        Exception("unknown"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_connection_errors_timeouts_and_unknown_errors_are_transient(exc: BaseException) -> None:
    verdict = classify(exc, retry_timeouts=False)
    assert verdict.transient
    assert verdict.retry_after is None
    assert verdict.reason.startswith(type(exc).__name__)


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("bad input"),
        InvalidCron('invalid cron "61 * * * *"'),
        ConfigurationError("set PUNCHCLOCK_LLM_BASE_URL"),
        ValueError("bad"),
        json.JSONDecodeError("bad json", "{", 0),
        TypeError("bad"),
        KeyError("missing"),
        IndexError("missing"),
        AttributeError("none has no x"),
        NotImplementedError(),
        ZeroDivisionError(),
        httpx.UnsupportedProtocol("ftp://", request=REQUEST),
        httpx.InvalidURL("bad url"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_validation_and_programming_errors_are_permanent(exc: BaseException) -> None:
    assert classify(exc, retry_timeouts=True) == Verdict(False, None, type(exc).__name__)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_http_statuses_worth_a_retry_are_transient(status: int) -> None:
    verdict = classify(status_error(status), retry_timeouts=False)
    assert verdict.transient and verdict.retry_after is None
    assert verdict.reason.startswith(f"HTTPStatusError {status}")


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 410, 422])
def test_other_http_statuses_are_permanent(status: int) -> None:
    verdict = classify(status_error(status), retry_timeouts=True)
    assert not verdict.transient
    assert verdict.reason == f"HTTPStatusError {status} {httpx.codes.get_reason_phrase(status)}"


def test_reasons_never_carry_the_url_or_message() -> None:
    for exc in (status_error(404), status_error(503), httpx.ConnectError("to https://u:pw@host", request=REQUEST)):
        reason = classify(exc, retry_timeouts=False).reason
        assert "secret" not in reason and "pw" not in reason


def test_retry_after_in_seconds_is_honoured() -> None:
    assert classify(status_error(429, {"Retry-After": "120"}), retry_timeouts=False).retry_after == 120.0
    assert classify(status_error(503, {"Retry-After": " 2 "}), retry_timeouts=False).retry_after == 2.0


def test_retry_after_as_a_date_counts_from_the_response_date() -> None:
    headers = {"Date": http_date(NOW), "Retry-After": http_date(NOW + timedelta(seconds=90))}
    # The response's own Date wins over our clock: both come from the server, so no clock skew.
    verdict = classify(status_error(503, headers), retry_timeouts=False, now=NOW + timedelta(hours=1))
    assert verdict.retry_after == 90.0


def test_retry_after_as_a_date_counts_from_now_without_a_date_header() -> None:
    headers = {"Retry-After": http_date(NOW + timedelta(minutes=2))}
    assert classify(status_error(429, headers), retry_timeouts=False, now=NOW).retry_after == 120.0
    # Without any anchor the date cannot be read: the backoff alone applies.
    assert classify(status_error(429, headers), retry_timeouts=False).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        ("1.5", 1.5),
        (http_date(NOW - timedelta(seconds=30)), 0.0),  # already past: retry now
        ("Sat, 01 Mar 2025 12:00:10 -0000", 10.0),
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == expected


def test_retry_after_is_ignored_on_permanent_statuses() -> None:
    assert classify(status_error(403, {"Retry-After": "5"}), retry_timeouts=False).retry_after is None


def test_transient_error_and_dramatiq_retry_carry_their_wait() -> None:
    assert classify(TransientError("later", retry_after=3.5), retry_timeouts=False).retry_after == 3.5
    assert classify(Retry(delay=2500), retry_timeouts=False) == Verdict(True, 2.5, "Retry")
    assert classify(Retry(), retry_timeouts=False).retry_after is None


def test_timeouts_are_retried_only_when_the_schedule_asks() -> None:
    assert not classify(TimeLimitExceeded(), retry_timeouts=False).transient
    assert classify(TimeLimitExceeded(), retry_timeouts=True).transient


@pytest.mark.parametrize("retries", range(6))
def test_backoff_doubles_within_its_jitter_bounds(retries: int) -> None:
    low, high = 1_000 * 2**retries, 2_000 * 2**retries
    assert backoff_ms(retries, 1_000, 10**9, 0.0) == low
    assert int(low * 1.999) == backoff_ms(retries, 1_000, 10**9, 0.999) < high


@pytest.mark.parametrize("retries", range(6))
def test_backoff_is_capped_at_max_backoff(retries: int) -> None:
    for jitter in (0.0, 0.999):
        assert backoff_ms(retries, 10_000, 30_000, jitter) == min(30_000, int(10_000 * 2**retries * (1 + jitter)))
        assert backoff_ms(retries, 10_000, 30_000, jitter) <= 30_000


def test_backoff_stays_finite_for_huge_retry_counts() -> None:
    assert backoff_ms(10_000, 10_000, 300_000, 0.5) == 300_000


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5])
def test_jitter_outside_its_range_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_ms(0, 10, 100, jitter)


def test_retry_after_wins_over_a_shorter_backoff_and_over_max_backoff() -> None:
    verdict = Verdict(True, 2.0, "HTTPStatusError 429 Too Many Requests")
    assert retry_delay_ms(verdict, 0, 10, 50, 0.0) == 2_000
    # A longer backoff wins over a short Retry-After.
    assert retry_delay_ms(Verdict(True, 0.001, "x"), 3, 1_000, 60_000, 0.0) == 8_000
    assert retry_delay_ms(Verdict(True, None, "x"), 1, 1_000, 60_000, 0.5) == 3_000


def test_no_delay_outlives_rabbitmqs_consumer_timeout() -> None:
    assert MAX_RETRY_DELAY_MS < 30 * 60_000
    assert retry_delay_ms(Verdict(True, 3_600.0, "x"), 0, 10, 50, 0.0) == MAX_RETRY_DELAY_MS
    assert retry_delay_ms(Verdict(True, None, "x"), 20, 60_000, 7 * 86_400_000, 0.9) == MAX_RETRY_DELAY_MS

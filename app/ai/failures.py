"""What a failed LLM request means, in words safe to store.

    one attempt's failure                       what the caller gets, once the client's own retries are spent
    ───────────────────────────────────────     ──────────────────────────────────────────────────────────────
    timeout, connection error                   TransientError (the run's Dramatiq retries apply)
    HTTP 408, 429, 5xx                          TransientError(retry_after=its Retry-After)
    other HTTP 4xx (and 1xx, 3xx)               PermanentError with the server's message, at once
    a 200 that is not the expected JSON         PermanentError
    a base URL httpx cannot use                 ConfigurationError

Messages never hold an API key, an ``Authorization`` header, a URL's query values or password: httpx's own
messages may contain the URL, and a server may echo the key back ("Incorrect API key provided: sk-…"). All of
it goes through :func:`app.redaction.redact`, the endpoint's key passed along in case it is not registered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from app.ai.config import Endpoint
from app.errors import ConfigurationError, PunchclockError
from app.redaction import redact
from app.transient import PermanentError, TransientError, classify

_MAX_SERVER_MESSAGE = 500


class AttemptFailed(Exception):
    """One attempt's failure, inside the client: ``error`` is what the caller gets (scrubbed), ``error_type`` the
    span's ``error.type`` (the HTTP status, ``timeout``, or the httpx exception's name)."""

    def __init__(self, error: PunchclockError, error_type: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.error_type = error_type

    @property
    def transient(self) -> bool:
        return isinstance(self.error, TransientError)

    @property
    def retry_after(self) -> float | None:
        return self.error.retry_after if isinstance(self.error, TransientError) else None

    def gave_up(self, attempts: int) -> AttemptFailed:
        """The failure to raise once ``attempts`` attempts are spent: a transient one says how many were made."""
        if not self.transient or attempts < 2:
            return self
        error = TransientError(f"{self.error} (gave up after {attempts} attempts)", retry_after=self.retry_after)
        return AttemptFailed(error, self.error_type)


def safe_url(url: httpx.URL) -> str:
    """``scheme://host[:port]/path``: the parts of a request URL that may be shown."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def status_failure(endpoint: Endpoint, response: httpx.Response, *, now: datetime) -> AttemptFailed:
    """A non-2xx answer. ``now`` (aware) anchors a Retry-After HTTP date when the response has no Date."""
    status = f"{response.status_code} {response.reason_phrase}".rstrip()
    message = f"{endpoint.name} answered {status}"
    detail = server_message(response, endpoint.api_key)
    if detail:
        message += f": {detail}"
    verdict = classify(
        httpx.HTTPStatusError(message, request=response.request, response=response), retry_timeouts=False, now=now
    )
    if verdict.transient:
        return AttemptFailed(TransientError(message, retry_after=verdict.retry_after), str(response.status_code))
    if response.status_code in (401, 403):
        message += f" (check {endpoint.variables}_API_KEY)"
    elif response.status_code == 404:
        message += f" (check {endpoint.variables}_BASE_URL, the API's root such as …/v1, and the model name)"
    return AttemptFailed(PermanentError(message), str(response.status_code))


def server_message(response: httpx.Response, secret: str) -> str:
    """The server's own words: OpenAI's ``{"error": {"message": …}}``, Ollama's ``{"error": "…"}``, a
    ``message`` or ``detail``, else a plain-text body; scrubbed, on one line, at most 500 characters."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            text = str(error.get("message") or "")
        elif isinstance(error, str):
            text = error
        text = text or str(body.get("message") or body.get("detail") or "")
    elif body is None and response.headers.get("content-type", "").startswith("text/plain"):
        text = response.text
    text = " ".join(redact(text, also=[secret]).split())
    return text if len(text) <= _MAX_SERVER_MESSAGE else text[: _MAX_SERVER_MESSAGE - 1] + "…"


def request_failure(endpoint: Endpoint, exc: httpx.RequestError, url: httpx.URL, timeout: float) -> AttemptFailed:
    """No answer: a timeout or connection error (transient), or a URL httpx cannot use (configuration)."""
    where = f"{endpoint.name} request to {safe_url(url)}"
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, httpx.TimeoutException):
        return AttemptFailed(TransientError(f"{where} timed out after {timeout:g} s ({type(exc).__name__})"), "timeout")
    detail = redact(str(exc), also=[endpoint.api_key]) or "no detail"
    if classify(exc, retry_timeouts=False).transient:
        return AttemptFailed(TransientError(f"{where} failed: {type(exc).__name__}: {detail}"), name)
    return AttemptFailed(ConfigurationError(f"{where}: {detail} (check {endpoint.variables}_BASE_URL)"), name)


def malformed(endpoint: Endpoint, what: str) -> AttemptFailed:
    """A 200 that is not the answer the protocol promises; retrying gets the same."""
    return AttemptFailed(
        PermanentError(
            f"{endpoint.name} answered 200 but {what}: is {endpoint.variables}_BASE_URL an OpenAI-compatible API root?"
        ),
        "malformed_response",
    )

"""Run a Dify workflow app through its Service API: ``POST {base}/v1/workflows/run`` in blocking mode.

Apps are configured by name, with their base URL and the *name* of the environment variable that holds their
``app-…`` key; the key is read from the environ handed in at call time, so it never lives in the database, a
schedule or a run row, and it is scrubbed from every error, log and span.

What a call raises::

    PunchclockError
     ├── InvalidInput            unknown app name, a bad app configuration, an empty ``user``
     ├── ConfigurationError      the app's key variable is not set
     ├── PermanentError          HTTP 4xx other than 408 / 429, an unreadable reply (Dify's message kept)
     │    └── DifyWorkflowFailed the workflow ran and ended ``failed`` / ``stopped`` (not retried: it would
     │                           run, and fail, again)
     └── TransientError          HTTP 408 / 429 / 5xx, timeouts, connection errors, once the attempts inside
                                 are spent (its ``retry_after`` is the server's Retry-After, if any)

Transient failures are retried here first (tenacity, :data:`ATTEMPTS` attempts, honouring Retry-After up to
``max_inline_wait``); a longer Retry-After ends the attempts at once and is left to the run's own retry policy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from app.errors import ConfigurationError, InvalidInput
from app.redaction import redact, register_secret
from app.settings import ENV_NAME
from app.tracing import record_error
from app.transient import PermanentError, TransientError, classify

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from tenacity.wait import WaitBaseT

logger = logging.getLogger(__name__)

ATTEMPTS = 3
BACKOFF = wait_exponential(multiplier=0.5, min=0.5, max=8)
# A Retry-After longer than this is not slept through inside the step: the run's retry policy waits instead.
MAX_INLINE_WAIT = 30.0
# Dify Cloud sits behind Cloudflare, which ends a blocking request after 100 s.
DEFAULT_TIMEOUT = 100.0
# Statuses of a workflow run that finished its work; any other status fails the run.
SUCCEEDED = frozenset({"succeeded", "partial-succeeded"})
EXCERPT_CHARS = 300

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_base_url(base_url: str, *, where: str, shown: str, key_env: str) -> None:
    """A Dify base URL (workflow apps and datasets alike): http(s)://host[:port][/path], without credentials (the
    key lives in ``key_env``), query, fragment or the ``/v1`` the clients append; InvalidInput saying so."""
    url = urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidInput(f"{where}: {shown} must be http(s)://host[:port][/path]")
    if url.username is not None or url.password is not None:
        raise InvalidInput(f"{where}: the base URL must not carry credentials; put the key in {key_env}")
    if url.query or url.fragment:
        raise InvalidInput(f"{where}: {shown} must have no query or fragment")
    if url.path.rstrip("/").endswith("/v1"):
        raise InvalidInput(f"{where}: {shown} ends with /v1; drop it, the client appends /v1/...")


@dataclass(frozen=True)
class DifyApp:
    """A Dify workflow app. ``base_url``: the Service API root without ``/v1`` (``https://api.dify.ai`` or a
    self-hosted address; the client appends ``/v1/...``). ``key_env``: the name of the environment variable holding
    the app's ``app-…`` key. ``timeout``: seconds one blocking call may take."""

    name: str
    base_url: str
    key_env: str
    timeout: float = DEFAULT_TIMEOUT

    def validate(self) -> None:
        """Raise :class:`InvalidInput` naming the bad field and the fix."""
        if not _APP_NAME.fullmatch(self.name):
            raise InvalidInput(
                f'Dify app name "{self.name}": use 1-64 letters, digits, "_", "-" or ".", starting with a letter '
                "or digit"
            )
        where = f'Dify app "{self.name}"'
        check_base_url(self.base_url, where=where, shown=f'base URL "{self.base_url}"', key_env=self.key_env)
        if not ENV_NAME.fullmatch(self.key_env):
            raise InvalidInput(
                f'{where}: key variable "{self.key_env}" is not an environment variable name '
                "(letters, digits and _, e.g. DIFY_WEATHER_KEY); give the variable's name, never the key"
            )
        if not self.timeout > 0:
            raise InvalidInput(f"{where}: timeout={self.timeout}: must be more than 0 seconds")

    @property
    def workflow_run_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/v1/workflows/run"


@dataclass(frozen=True)
class DifyResult:
    """A finished workflow run. ``elapsed_time`` in seconds as Dify measured it (None if it did not say)."""

    app: str
    workflow_run_id: str
    status: str
    outputs: dict[str, Any]
    error: str | None
    elapsed_time: float | None
    total_tokens: int
    total_steps: int | None


class DifyWorkflowFailed(PermanentError):
    """The workflow ran and ended ``failed`` or ``stopped`` (or another unfinished status); ``error`` is Dify's,
    ``total_tokens`` what the run spent before it ended (billed all the same)."""

    def __init__(
        self, app: str, workflow_run_id: str, status: str, error: str | None, *, total_tokens: int = 0
    ) -> None:
        detail = error or "no error message"
        super().__init__(f'Dify app "{app}": workflow run {workflow_run_id} {status}: {detail}')
        self.app = app
        self.workflow_run_id = workflow_run_id
        self.status = status
        self.error = error
        self.total_tokens = total_tokens


class DifyClient:
    """Runs workflow apps over the worker's shared ``httpx.AsyncClient``.

    ``environ`` is read when a call is made (not copied), so a key set after the worker booted is seen.
    ``backoff`` is tenacity's wait between attempts (tests pass ``wait_none()``); a server's Retry-After wins when
    longer. ``sleep`` waits between attempts (tests pass one that records).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        apps: Mapping[str, DifyApp],
        environ: Mapping[str, str],
        *,
        attempts: int = ATTEMPTS,
        backoff: WaitBaseT = BACKOFF,
        max_inline_wait: float = MAX_INLINE_WAIT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        for name, app in apps.items():
            app.validate()
            if name != app.name:
                raise InvalidInput(f'Dify app "{app.name}" is configured under the name "{name}"; use one name')
        if attempts < 1:
            raise InvalidInput(f"attempts={attempts}: must be 1 or more")
        self._http = http
        self._apps = dict(apps)
        self._environ = environ
        self._attempts = attempts
        self._backoff = backoff
        self._max_inline_wait = max_inline_wait
        self._sleep = sleep
        self._tracer = trace.get_tracer("punchclock.ai", tracer_provider=tracer_provider)

    def app(self, name: str) -> DifyApp:
        """The app configured as ``name``; :class:`InvalidInput` listing the configured ones otherwise."""
        try:
            return self._apps[name]
        except KeyError:
            known = ", ".join(f'"{n}"' for n in sorted(self._apps)) or "none"
            raise InvalidInput(f'unknown Dify app "{name}": configured apps are {known}') from None

    async def run_workflow(self, app: str, inputs: Mapping[str, Any], *, user: str) -> DifyResult:
        """Run ``app`` with ``inputs`` on behalf of ``user`` (the schedule's name) and wait for its result.

        Raises what the module docstring lists; never returns a failed run.
        """
        config = self.app(app)
        if not user:
            raise InvalidInput(f'Dify app "{app}": user must not be empty; pass the schedule name')
        key = self._key(config)
        url = urlsplit(config.base_url)
        with self._tracer.start_as_current_span(
            f"dify {app}", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attribute("dify.app", app)
            span.set_attribute("server.address", url.hostname or "")
            if url.port is not None:
                span.set_attribute("server.port", url.port)
            try:
                result = await self._run_with_retries(config, key, dict(inputs), user)
            except Exception as exc:
                # Every message built here has the key scrubbed; the chain is cut where an httpx request
                # (which holds the Authorization header) could hang off it.
                _record_failure(span, exc)
                raise
            span.set_attribute("dify.workflow_run_id", result.workflow_run_id)
            span.set_attribute("dify.status", result.status)
            span.set_attribute("dify.total_tokens", result.total_tokens)
            if result.elapsed_time is not None:
                span.set_attribute("dify.elapsed_time", result.elapsed_time)
            if result.total_steps is not None:
                span.set_attribute("dify.total_steps", result.total_steps)
            return result

    def _key(self, app: DifyApp) -> str:
        key = self._environ.get(app.key_env, "").strip()
        if not key:
            raise ConfigurationError(f'Dify app "{app.name}": set {app.key_env} to its app-… API key')
        register_secret(key)  # a key set after boot (the environ is read per call) is masked from now on too
        return key

    async def _run_with_retries(self, app: DifyApp, key: str, inputs: dict[str, Any], user: str) -> DifyResult:
        async for attempt in AsyncRetrying(
            sleep=self._sleep,
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=lambda state: _log_retry(app, state),
            reraise=True,
        ):
            with attempt:
                return await self._post(app, key, inputs, user)
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    def _stop(self, state: RetryCallState) -> bool:
        return state.attempt_number >= self._attempts or _retry_after(state) > self._max_inline_wait

    def _wait(self, state: RetryCallState) -> float:
        return max(self._backoff(state), _retry_after(state))

    async def _post(self, app: DifyApp, key: str, inputs: dict[str, Any], user: str) -> DifyResult:
        where = f'Dify app "{app.name}"'
        try:
            response = await self._http.post(
                app.workflow_run_url,
                json={"inputs": inputs, "response_mode": "blocking", "user": user},
                headers={"Authorization": f"Bearer {key}"},
                timeout=httpx.Timeout(app.timeout, connect=min(app.timeout, 10.0)),
            )
        except httpx.HTTPError as exc:  # timeouts, refused connections, protocol errors
            verdict = classify(exc, retry_timeouts=True)
            detail = redact(str(exc), also=[key]) or "no detail"
            message = f"{where}: {type(exc).__name__}: {detail}"
            if verdict.transient:
                raise TransientError(message) from None
            raise PermanentError(message) from None
        if not response.is_success:
            verdict = classify(
                httpx.HTTPStatusError("", request=response.request, response=response), retry_timeouts=True
            )
            message = f"{where}: HTTP {response.status_code}: {error_text(response, key)}"
            if verdict.transient:
                raise TransientError(message, retry_after=verdict.retry_after)
            raise PermanentError(message)
        return _parse_reply(app.name, response, key)


def _parse_reply(app: str, response: httpx.Response, key: str) -> DifyResult:
    """Map a blocking reply; :class:`DifyWorkflowFailed` for a run that did not succeed."""
    try:
        body: Any = response.json()
        data = body["data"]
        run_id = str(body.get("workflow_run_id") or data["id"])
        status = str(data["status"])
        outputs = data.get("outputs") or {}
        error = data.get("error") or None
        elapsed = data.get("elapsed_time")
        tokens = data.get("total_tokens") or 0
        steps = data.get("total_steps")
        if not isinstance(outputs, dict):
            raise TypeError("outputs is not an object")
        result = DifyResult(
            app=app,
            workflow_run_id=run_id,
            status=status,
            outputs=outputs,
            error=redact(str(error), also=[key]) if error is not None else None,
            elapsed_time=float(elapsed) if elapsed is not None else None,
            total_tokens=int(tokens),
            total_steps=int(steps) if steps is not None else None,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        excerpt = redact(response.text[:EXCERPT_CHARS], also=[key]).strip() or "(empty body)"
        raise PermanentError(
            f'Dify app "{app}": HTTP {response.status_code} is not a blocking workflow reply '
            f"(is the base URL the Service API?): {excerpt}"
        ) from None
    if result.status not in SUCCEEDED:
        raise DifyWorkflowFailed(
            app, result.workflow_run_id, result.status, result.error, total_tokens=result.total_tokens
        )
    return result


def error_text(response: httpx.Response, key: str) -> str:
    """Dify's error JSON as ``code: message`` (the workflow and the dataset APIs answer alike), or an excerpt
    of whatever else came back; key scrubbed."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        code = body.get("code")
        text = f"{code}: {body['message']}" if code else str(body["message"])
    else:
        text = response.text[:EXCERPT_CHARS].strip() or response.reason_phrase or "(empty body)"
    return redact(text, also=[key])


def _retry_after(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, TransientError) and error.retry_after is not None:
        return error.retry_after
    return 0.0


def _record_failure(span: Span, exc: Exception) -> None:
    span.set_attribute("error.type", type(exc).__name__)
    if isinstance(exc, DifyWorkflowFailed):
        span.set_attribute("dify.workflow_run_id", exc.workflow_run_id)
        span.set_attribute("dify.status", exc.status)
    record_error(span, exc)


def _log_retry(app: DifyApp, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    logger.info(
        f'Dify app "{app.name}": attempt {state.attempt_number} failed, retrying in {delay:.1f}s: {error}',
        extra={"action": "dify_retrying", "dify_app": app.name, "attempt": state.attempt_number, "error": str(error)},
    )

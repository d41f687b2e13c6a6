"""A Dify dataset (knowledge base) through its Knowledge API, with the dataset API key: documents created, updated
and deleted by text, their indexing waited for, and the dataset searched.

    POST   {base}/v1/datasets/{dataset}/document/create-by-text                 name, text → document id, batch
    POST   {base}/v1/datasets/{dataset}/documents/{document}/update-by-text     name, text → batch
    DELETE {base}/v1/datasets/{dataset}/documents/{document}
    GET    {base}/v1/datasets/{dataset}/documents/{batch}/indexing-status       until completed / error
    POST   {base}/v1/datasets/{dataset}/retrieve                                query, retrieval_model → records

(Dify's ``api/controllers/service_api/dataset/document.py`` and ``hit_testing.py``; the hyphenated paths are the
documented ones, Dify still routes the older ``create_by_text`` / ``update_by_text`` to the same handlers.)

The key is read from the environment variable the :class:`~app.kb.definition.DifyTarget` names at each call, so
it never lives in the database, and it is scrubbed from every error, log and span. Failures are classified like
the workflow client's (``app/ai/dify.py``)::

    ConfigurationError   the key variable is not set
    PermanentError       HTTP 4xx other than 408 / 429 (Dify's ``code: message`` kept), an unreadable reply, a
                         document whose indexing ended in ``error``
     └── DifyDocumentMissing   404 on an update: the document was deleted in Dify (create it again)
    TransientError       HTTP 408 / 429 / 5xx, timeouts, connection errors, once the attempts inside are spent;
                         Dify's 400 ``document_indexing`` (a document cannot be deleted while it is indexed);
                         indexing still running after ``index_timeout``

The request bodies and the reply parsers are pure functions, tested apart from the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from app.ai.dify import EXCERPT_CHARS, error_text
from app.errors import ConfigurationError
from app.redaction import redact, register_secret
from app.tracing import record_error
from app.transient import PermanentError, TransientError, classify

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from tenacity.wait import WaitBaseT

    from app.kb.definition import DifyTarget

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

ATTEMPTS = 3
BACKOFF = wait_exponential(multiplier=0.5, min=0.5, max=8)
MAX_INLINE_WAIT = 30.0  # a longer Retry-After is left to the run's own retry policy
TIMEOUT = 60.0
# Indexing is asynchronous in Dify: polled every POLL_INTERVAL seconds (growing to POLL_MAX), for INDEX_TIMEOUT.
POLL_INTERVAL = 1.0
POLL_MAX = 10.0
INDEX_TIMEOUT = 600.0
# Dify refuses a retrieve query longer than this (HitTestingPayload.query max_length).
MAX_QUERY_CHARS = 250

INDEXING_DONE = "completed"
# "paused" is a person's doing in Dify's console: nothing will finish it, so it ends the wait like an error.
INDEXING_STOPPED = frozenset({"error", "paused"})
# Dify's 400 for a delete while the document is being indexed: it passes once indexing ends.
_TRANSIENT_CODES = frozenset({"document_indexing"})


class DifyDocumentMissing(PermanentError):
    """Dify answered 404 for a document: it was deleted there (by hand, or by another tool)."""


@dataclass(frozen=True)
class Pushed:
    """A document Dify accepted: its id and the batch its indexing is followed by."""

    document_id: str
    batch: str


@dataclass(frozen=True)
class IndexingStatus:
    document_id: str
    status: str  # waiting, parsing, cleaning, splitting, indexing, completed, error, paused
    error: str | None


@dataclass(frozen=True)
class Record:
    """One retrieved chunk: the document it is from (id and name) and its text."""

    document_id: str
    document_name: str
    content: str
    score: float | None


# --- the requests and replies (pure) -----------------------------------------------------------------------------


def create_body(name: str, text: str, indexing_technique: str) -> dict[str, Any]:
    """``create-by-text``: Dify splits the text with its automatic rule (the dataset's embedding model and
    retrieval settings apply); ``indexing_technique`` is needed only by a dataset that has none yet."""
    return {
        "name": name,
        "text": text,
        "indexing_technique": indexing_technique,
        "doc_form": "text_model",
        "process_rule": {"mode": "automatic"},
    }


def update_body(name: str, text: str) -> dict[str, Any]:
    # The dataset's indexing technique is kept by Dify on an update.
    return {"name": name, "text": text, "process_rule": {"mode": "automatic"}}


def retrieve_body(query: str, top_k: int, search_method: str) -> dict[str, Any]:
    """A full ``retrieval_model``: Dify requires every one of these fields once the object is sent, and sending
    it is the only way to set ``top_k`` (otherwise the dataset's own setting applies)."""
    return {
        "query": query[:MAX_QUERY_CHARS],
        "retrieval_model": {
            "search_method": search_method,
            "reranking_enable": False,
            "top_k": top_k,
            "score_threshold_enabled": False,
        },
    }


def parse_pushed(body: Any) -> Pushed:
    """``{"document": {"id": …}, "batch": …}``; ValueError when it is not that."""
    if not isinstance(body, Mapping) or not isinstance(body.get("document"), Mapping):
        raise ValueError("no document object")
    document_id, batch = body["document"].get("id"), body.get("batch")
    if not isinstance(document_id, str) or not document_id or not isinstance(batch, str) or not batch:
        raise ValueError("no document id or batch")
    return Pushed(document_id, batch)


def parse_indexing(body: Any) -> list[IndexingStatus]:
    """``{"data": [{"id", "indexing_status", "error", ...}]}``; ValueError when it is not that."""
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list) or not data:
        raise ValueError("no data list")
    statuses = []
    for item in data:
        if not isinstance(item, Mapping) or not isinstance(item.get("indexing_status"), str):
            raise ValueError("an item has no indexing_status")
        error = item.get("error")
        statuses.append(
            IndexingStatus(str(item.get("id") or ""), item["indexing_status"], str(error) if error else None)
        )
    return statuses


def indexing_outcome(statuses: Sequence[IndexingStatus]) -> IndexingStatus | None:
    """The first document whose indexing stopped short (``error``, ``paused``); None while it may yet finish."""
    return next((s for s in statuses if s.status in INDEXING_STOPPED), None)


def indexing_done(statuses: Sequence[IndexingStatus]) -> bool:
    return all(s.status == INDEXING_DONE for s in statuses)


def parse_records(body: Any) -> list[Record]:
    """``{"records": [{"segment": {"content", "document": {"id", "name"}}, "score"}]}``, in rank order."""
    records = body.get("records") if isinstance(body, Mapping) else None
    if not isinstance(records, list):
        raise ValueError("no records list")
    found = []
    for record in records:
        segment = record.get("segment") if isinstance(record, Mapping) else None
        document = segment.get("document") if isinstance(segment, Mapping) else None
        if not isinstance(segment, Mapping) or not isinstance(document, Mapping):
            raise ValueError("a record has no segment.document")
        score = record.get("score")
        found.append(
            Record(
                document_id=str(document.get("id") or segment.get("document_id") or ""),
                document_name=str(document.get("name") or ""),
                content=str(segment.get("content") or ""),
                score=float(score) if isinstance(score, int | float) else None,
            )
        )
    return found


def status_error(where: str, response: httpx.Response, key: str) -> PermanentError | TransientError:
    """What a non-2xx answer means (see the module docstring)."""
    message = f"{where}: HTTP {response.status_code}: {error_text(response, key)}"
    verdict = classify(httpx.HTTPStatusError("", request=response.request, response=response), retry_timeouts=True)
    if verdict.transient:
        return TransientError(message, retry_after=verdict.retry_after)
    code = _error_code(response)
    if code in _TRANSIENT_CODES:
        return TransientError(message)
    if response.status_code in (401, 403):
        return PermanentError(f"{message} (check the dataset API key in the variable the Dify target names)")
    if response.status_code == 404:
        return DifyDocumentMissing(message)
    return PermanentError(message)


def _error_code(response: httpx.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return str(body.get("code")) if isinstance(body, dict) and body.get("code") else None


# --- the client (I/O) --------------------------------------------------------------------------------------------


class DifyDatasetClient:
    """One Dify dataset over the worker's shared ``httpx.AsyncClient``. ``environ`` is read at each call.
    ``backoff`` is tenacity's wait between attempts (tests pass ``wait_none()``); ``sleep`` waits between attempts
    and polls; ``poll_interval`` / ``index_timeout`` bound :meth:`wait_indexed`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        target: DifyTarget,
        environ: Mapping[str, str],
        *,
        attempts: int = ATTEMPTS,
        backoff: WaitBaseT = BACKOFF,
        max_inline_wait: float = MAX_INLINE_WAIT,
        timeout: float = TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
        index_timeout: float = INDEX_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.target = target
        self._http = http
        self._environ = environ
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_inline_wait = max_inline_wait
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._index_timeout = index_timeout
        self._sleep = sleep
        self._clock = clock
        self._tracer = trace.get_tracer("punchclock.kb", tracer_provider=tracer_provider)
        self._root = f"{target.base_url.rstrip('/')}/v1/datasets/{quote(target.dataset_id, safe='')}"

    @property
    def where(self) -> str:
        return f"Dify dataset {self.target.dataset_id}"

    async def create(self, name: str, text: str) -> Pushed:
        body = create_body(name, text, self.target.indexing_technique)
        reply = await self._call("create", "POST", "/document/create-by-text", body)
        return self._parse(parse_pushed, reply, "create-by-text")

    async def update(self, document_id: str, name: str, text: str) -> Pushed:
        """Raises :class:`DifyDocumentMissing` when the document is no longer in Dify."""
        path = f"/documents/{quote(document_id, safe='')}/update-by-text"
        reply = await self._call("update", "POST", path, update_body(name, text), document_id=document_id)
        return self._parse(parse_pushed, reply, "update-by-text")

    async def delete(self, document_id: str) -> bool:
        """Delete a document; False when Dify no longer had it (the aim is reached all the same)."""
        try:
            await self._call(
                "delete", "DELETE", f"/documents/{quote(document_id, safe='')}", None, document_id=document_id
            )
        except DifyDocumentMissing:
            return False
        return True

    async def indexing(self, batch: str) -> list[IndexingStatus]:
        reply = await self._call("indexing-status", "GET", f"/documents/{quote(batch, safe='')}/indexing-status", None)
        return self._parse(parse_indexing, reply, "indexing-status")

    async def wait_indexed(self, batch: str) -> None:
        """Poll ``batch`` until every document is indexed: PermanentError when one ended in ``error`` (Dify's
        message) or ``paused``, TransientError when it still runs after ``index_timeout``."""
        deadline = self._clock() + self._index_timeout
        interval = self._poll_interval
        while True:
            statuses = await self.indexing(batch)
            stopped = indexing_outcome(statuses)
            if stopped is not None:
                detail = redact(stopped.error or "no error message", also=[self._key_or_empty()])
                raise PermanentError(
                    f"{self.where}: indexing of document {stopped.document_id} ended {stopped.status}: {detail}"
                )
            if indexing_done(statuses):
                return
            if self._clock() + interval > deadline:
                running = ", ".join(f"{s.document_id} {s.status}" for s in statuses if s.status != INDEXING_DONE)
                raise TransientError(
                    f"{self.where}: batch {batch} still indexing after {self._index_timeout:g} s ({running})"
                )
            await self._sleep(interval)
            interval = min(interval * 2, POLL_MAX)

    async def retrieve(self, query: str, top_k: int) -> list[Record]:
        body = retrieve_body(query, top_k, self.target.search_method)
        reply = await self._call("retrieve", "POST", "/retrieve", body)
        return self._parse(parse_records, reply, "retrieve")

    # --- one call: key, span, retries, classification ---------------------------------------------------------

    def check_key(self) -> None:
        """ConfigurationError now, rather than after a whole build, when the key variable is not set."""
        self._key()

    def _key(self) -> str:
        key = self._environ.get(self.target.api_key_env, "").strip()
        if not key:
            raise ConfigurationError(
                f"{self.where}: set {self.target.api_key_env} to the dataset API key (dataset-…) where workers run"
            )
        register_secret(key)  # a key set after boot is masked from now on too
        return key

    def _key_or_empty(self) -> str:
        return self._environ.get(self.target.api_key_env, "").strip()

    def _parse(self, parser: Callable[[Any], _T], reply: httpx.Response, what: str) -> _T:
        try:
            return parser(reply.json())
        except ValueError as error:  # a JSON decode error is a ValueError too
            excerpt = redact(reply.text[:EXCERPT_CHARS], also=[self._key_or_empty()]).strip() or "(empty body)"
            raise PermanentError(
                f"{self.where}: HTTP {reply.status_code} is not a {what} reply ({error}; is the base URL Dify's"
                f" Service API?): {excerpt}"
            ) from None

    async def _call(
        self, operation: str, method: str, path: str, body: dict[str, Any] | None, *, document_id: str | None = None
    ) -> httpx.Response:
        key = self._key()
        url = urlsplit(self.target.base_url)
        with self._tracer.start_as_current_span(
            f"dify dataset {operation}", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attribute("dify.dataset_id", self.target.dataset_id)
            span.set_attribute("dify.operation", operation)
            span.set_attribute("http.request.method", method)
            span.set_attribute("server.address", url.hostname or "")
            if url.port is not None:
                span.set_attribute("server.port", url.port)
            if document_id is not None:
                span.set_attribute("dify.document_id", document_id)
            try:
                response = await self._with_retries(operation, method, path, body, key)
            except Exception as exc:
                # Every message built here has the key scrubbed; no httpx request (which holds the Authorization
                # header) hangs off the errors raised.
                span.set_attribute("error.type", type(exc).__name__)
                record_error(span, exc)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    async def _with_retries(
        self, operation: str, method: str, path: str, body: dict[str, Any] | None, key: str
    ) -> httpx.Response:
        async for attempt in AsyncRetrying(
            sleep=self._sleep,
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=lambda state: self._log_retry(operation, state),
            reraise=True,
        ):
            with attempt:
                return await self._send(operation, method, path, body, key)
        raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover

    def _stop(self, state: RetryCallState) -> bool:
        return state.attempt_number >= self._attempts or _retry_after(state) > self._max_inline_wait

    def _wait(self, state: RetryCallState) -> float:
        return max(self._backoff(state), _retry_after(state))

    async def _send(
        self, operation: str, method: str, path: str, body: dict[str, Any] | None, key: str
    ) -> httpx.Response:
        where = f"{self.where}: {operation}"
        try:
            response = await self._http.request(
                method,
                self._root + path,
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
            )
        except httpx.HTTPError as exc:  # timeouts, refused connections, protocol errors
            detail = redact(str(exc), also=[key]) or "no detail"
            message = f"{where}: {type(exc).__name__}: {detail}"
            if classify(exc, retry_timeouts=True).transient:
                raise TransientError(message) from None
            raise PermanentError(message) from None
        if not response.is_success:
            raise status_error(where, response, key)
        return response

    def _log_retry(self, operation: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.info(
            f"{self.where}: {operation} attempt {state.attempt_number} failed, retrying in {delay:.1f}s: {error}",
            extra={
                "action": "dify_dataset_retrying",
                "dify_dataset": self.target.dataset_id,
                "operation": operation,
                "attempt": state.attempt_number,
                "error": str(error),
            },
        )


def _retry_after(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, TransientError) and error.retry_after is not None:
        return error.retry_after
    return 0.0

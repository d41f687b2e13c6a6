"""A loopback Dify Service API: ``POST /v1/workflows/run`` in blocking mode, on a real socket, so the production
client runs unchanged.

    with FakeDify(key="app-test") as dify:
        dify.script(HttpError(500), Succeed(outputs=lambda inputs: {"summary": f"weather in {inputs['city']}"}))
        app = DifyApp("weather", dify.base_url, "DIFY_WEATHER_KEY")
        ...                                # then dify.requests: what arrived, dify.answers: what went back

Each request is answered by the next scripted reply, then by ``default`` (a success echoing the inputs). A request
with the wrong key gets Dify's 401 before any scripted reply is used. Replies, as Dify sends them:

    Succeed   200, data.status "succeeded", outputs derived from the inputs, total_tokens, elapsed_time
    Fail      200, data.status "failed" (or "stopped"), data.error
    HttpError an error status with Dify's error JSON {"code", "message", "status"}, optionally Retry-After
    Hang      no answer until the server closes (the client's timeout fires)

It also serves one dataset of the Knowledge API, with its own key (``dataset_key``) and id (``dataset_id``):

    POST   /v1/datasets/{id}/document/create-by-text (and create_by_text)   name, text → document, batch
    POST   /v1/datasets/{id}/documents/{doc}/update-by-text (update_by_text)
    DELETE /v1/datasets/{id}/documents/{doc}                                 204; 404 for an unknown document
    GET    /v1/datasets/{id}/documents/{batch}/indexing-status               "indexing" for ``indexing_polls``
                                                                             polls, then "completed" (or "error"
                                                                             for a name in ``index_errors``)
    POST   /v1/datasets/{id}/retrieve                                        indexed documents ranked by how many
                                                                             query words their text holds

``documents`` is the dataset's state (id → :class:`FakeDocument`); ``dataset_errors(HttpError(503), ...)``
answers the next dataset requests (with the right key) with those errors first.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

WORKFLOW_RUN_PATH = "/v1/workflows/run"
DATASETS_PATH = "/v1/datasets/"


def echo_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"echo": inputs}


@dataclass(frozen=True)
class Succeed:
    outputs: Callable[[dict[str, Any]], dict[str, Any]] = echo_inputs
    total_tokens: int = 42
    elapsed_time: float = 1.25
    total_steps: int = 3
    status: str = "succeeded"


@dataclass(frozen=True)
class Fail:
    error: str = "Node LLM run failed: model quota exceeded"
    status: str = "failed"
    total_tokens: int = 7
    elapsed_time: float = 0.5


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str = "internal_server_error"
    message: str = "The server encountered an internal error"
    retry_after: str | None = None


@dataclass(frozen=True)
class Hang:
    """Hold the request open until the server closes."""


Reply = Succeed | Fail | HttpError | Hang


@dataclass
class FakeDocument:
    """A document of the fake dataset; ``polls`` counts the indexing-status requests that saw its batch."""

    id: str
    name: str
    text: str
    batch: str
    polls: int = 0
    status: str = "waiting"
    error: str | None = None


@dataclass(frozen=True)
class DifyRequest:
    """One request as it arrived. ``headers`` are keyed in lower case; ``body`` is the decoded JSON (or None)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any

    @property
    def inputs(self) -> Any:
        return self.body.get("inputs") if isinstance(self.body, dict) else None

    @property
    def user(self) -> Any:
        return self.body.get("user") if isinstance(self.body, dict) else None


@dataclass
class FakeDify:
    """The server; a context manager. ``base_url`` (``http://127.0.0.1:port``, no ``/v1``) is set once entered."""

    key: str = "app-fake-dify-key"
    default: Reply = field(default_factory=Succeed)
    base_url: str = ""
    requests: list[DifyRequest] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    _script: deque[Reply] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    # the Knowledge API's dataset
    dataset_key: str = "dataset-fake-dify-key"
    dataset_id: str = "6f1c1d52-4d1a-4b0e-9a54-2b1f3c7d8e90"
    indexing_polls: int = 1
    index_errors: dict[str, str] = field(default_factory=dict)  # document name → its indexing error
    documents: dict[str, FakeDocument] = field(default_factory=dict)
    _dataset_script: deque[HttpError] = field(default_factory=deque)

    def dataset_errors(self, *errors: HttpError) -> None:
        """Answer the next dataset requests (with the right key) with ``errors``, in order."""
        with self._lock:
            self._dataset_script.extend(errors)

    def dataset_requests(self, verb: str | None = None) -> list[DifyRequest]:
        """The dataset requests that arrived, or those whose path ends with ``verb`` ("create-by-text", ...)."""
        with self._lock:
            found = [r for r in self.requests if r.path.startswith(DATASETS_PATH)]
        return found if verb is None else [r for r in found if r.path.rstrip("/").endswith(verb)]

    def names(self) -> dict[str, str]:
        """The dataset's documents as name → text."""
        with self._lock:
            return {doc.name: doc.text for doc in self.documents.values()}

    def script(self, *replies: Reply) -> None:
        """Answer the next requests (with the right key and a valid body) with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> FakeDify:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-dify", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # releases hanging requests
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, request: DifyRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _answered(self, status: int, body: Any) -> None:
        with self._lock:
            self.answers.append((status, body))


def _handler(fake: FakeDify) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {name.lower(): value for name, value in self.headers.items()}
            fake._record(DifyRequest("POST", self.path, headers, body))
            if self.path.startswith(DATASETS_PATH):
                self._dataset("POST", headers, body)
            elif self.path != WORKFLOW_RUN_PATH:
                self._error(404, "not_found", "The requested URL was not found on the server.")
            elif headers.get("authorization") != f"Bearer {fake.key}":
                self._error(401, "unauthorized", "Access token is invalid")
            elif problem := _invalid_body(body):
                self._error(400, "invalid_param", problem)
            else:
                self._reply(fake._next_reply(), body["inputs"])

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake._record(DifyRequest("GET", self.path, headers, None))
            if self.path.startswith(DATASETS_PATH):
                self._dataset("GET", headers, None)
                return
            self._error(404, "not_found", "The requested URL was not found on the server.")

        def do_DELETE(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake._record(DifyRequest("DELETE", self.path, headers, json.loads(raw) if raw else None))
            if self.path.startswith(DATASETS_PATH):
                self._dataset("DELETE", headers, None)
                return
            self._error(404, "not_found", "The requested URL was not found on the server.")

        def _dataset(self, method: str, headers: Mapping[str, str], body: Any) -> None:
            if headers.get("authorization") != f"Bearer {fake.dataset_key}":
                self._error(401, "unauthorized", "Access token is invalid")
                return
            with fake._lock:
                scripted = fake._dataset_script.popleft() if fake._dataset_script else None
            if scripted is not None:
                self._error(scripted.status, scripted.code, scripted.message, retry_after=scripted.retry_after)
                return
            status, reply = _dataset_reply(fake, method, self.path, body)
            if status == 204:
                fake._answered(204, None)
                self.send_response(204)
                self.end_headers()
            elif status >= 400:
                self._error(status, reply["code"], reply["message"])
            else:
                self._send(status, reply)

        def _reply(self, reply: Reply, inputs: dict[str, Any]) -> None:
            if isinstance(reply, Hang):
                fake._closing.wait()
                self.close_connection = True
                return
            if isinstance(reply, HttpError):
                self._error(reply.status, reply.code, reply.message, retry_after=reply.retry_after)
                return
            run_id = str(uuid.uuid4())
            now = int(time.time())
            data: dict[str, Any] = {
                "id": run_id,
                "workflow_id": "5b0e2a3c-8f1d-4c7e-9a6b-2d4f6e8a0c1e",
                "status": reply.status,
                "outputs": reply.outputs(inputs) if isinstance(reply, Succeed) else {},
                "error": reply.error if isinstance(reply, Fail) else None,
                "elapsed_time": reply.elapsed_time,
                "total_tokens": reply.total_tokens,
                "total_steps": reply.total_steps if isinstance(reply, Succeed) else 1,
                "created_at": now,
                "finished_at": now,
            }
            self._send(200, {"task_id": str(uuid.uuid4()), "workflow_run_id": run_id, "data": data})

        def _error(self, status: int, code: str, message: str, *, retry_after: str | None = None) -> None:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            self._send(status, {"code": code, "message": message, "status": status}, headers)

        def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            fake._answered(status, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _invalid_body(body: Any) -> str | None:
    """Dify's own checks on a workflow run request; the message of its 400, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received or JSON payload is empty."
    if not isinstance(body.get("inputs"), dict):
        return "inputs is required in input form"
    if body.get("response_mode") != "blocking":
        return "the fake Dify server speaks response_mode blocking only"
    if not isinstance(body.get("user"), str) or not body["user"]:
        return "user is required"
    return None


_DATASET_ROUTES = [
    ("POST", re.compile(r"/document/create[-_]by[-_]text"), "create"),
    ("POST", re.compile(r"/documents/(?P<doc>[^/]+)/update[-_]by[-_]text"), "update"),
    ("DELETE", re.compile(r"/documents/(?P<doc>[^/]+)"), "delete"),
    ("GET", re.compile(r"/documents/(?P<doc>[^/]+)/indexing-status"), "status"),
    ("POST", re.compile(r"/retrieve"), "retrieve"),
]
_NOT_FOUND = (404, {"code": "not_found", "message": "The requested URL was not found on the server."})
_SEARCH_METHODS = ("semantic_search", "full_text_search", "hybrid_search", "keyword_search")


def _dataset_reply(fake: FakeDify, method: str, path: str, body: Any) -> tuple[int, Any]:
    """Dify's answer to one Knowledge API request on the fake dataset: (status, JSON body)."""
    rest = path[len(DATASETS_PATH) :]
    dataset, _, tail = rest.partition("/")
    if dataset != fake.dataset_id:
        return 404, {"code": "not_found", "message": "Dataset not found."}
    for verb, pattern, action in _DATASET_ROUTES:
        match = pattern.fullmatch("/" + tail)
        if verb == method and match:
            with fake._lock:
                return _act(fake, action, match.groupdict().get("doc"), body)
    return _NOT_FOUND


def _act(fake: FakeDify, action: str, doc_id: str | None, body: Any) -> tuple[int, Any]:
    if action in ("create", "update"):
        if not isinstance(body, dict):
            return 400, {"code": "invalid_param", "message": "Invalid JSON payload received or JSON payload is empty."}
        name, text = body.get("name"), body.get("text")
        if not isinstance(name, str) or not name or not isinstance(text, str) or not text:
            return 400, {"code": "invalid_param", "message": "Both 'text' and 'name' must be non-null values."}
        batch = uuid.uuid4().hex[:20]
        if action == "create":
            document = FakeDocument(str(uuid.uuid4()), name, text, batch)
            fake.documents[document.id] = document
        else:
            found = fake.documents.get(doc_id or "")
            if found is None:
                return 404, {"code": "not_found", "message": "Document not found."}
            document = found
            document.name, document.text, document.batch = name, text, batch
            document.polls, document.status, document.error = 0, "waiting", None
        return 200, {"document": _document_json(document), "batch": batch}
    if action == "delete":
        if fake.documents.pop(doc_id or "", None) is None:
            return 404, {"code": "not_found", "message": "Document Not Exists."}
        return 204, None
    if action == "status":
        batch = [d for d in fake.documents.values() if d.batch == doc_id]
        if not batch:
            return 404, {"code": "not_found", "message": "Documents not found."}
        for document in batch:
            document.polls += 1
            if document.polls > fake.indexing_polls and document.status != "completed":
                error = fake.index_errors.get(document.name)
                document.status, document.error = ("error", error) if error else ("completed", None)
            elif document.status == "waiting":
                document.status = "indexing"
        return 200, {"data": [_status_json(d) for d in batch]}
    return _retrieve(fake, body)


def _retrieve(fake: FakeDify, body: Any) -> tuple[int, Any]:
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query:
        return 400, {"code": "invalid_param", "message": "query is required"}
    model = body.get("retrieval_model")
    top_k = 4  # the dataset's own setting when no retrieval_model is sent
    if model is not None:
        required = ("search_method", "reranking_enable", "top_k", "score_threshold_enabled")
        if not isinstance(model, dict) or any(name not in model for name in required):
            return 400, {"code": "invalid_param", "message": f"retrieval_model needs {', '.join(required)}"}
        if model["search_method"] not in _SEARCH_METHODS:
            return 400, {"code": "invalid_param", "message": f"invalid search_method {model['search_method']}"}
        top_k = int(model["top_k"])
    words = set(re.findall(r"\w+", query.casefold()))
    scored = []
    for document in fake.documents.values():
        if document.status != "completed":
            continue
        score = len(words & set(re.findall(r"\w+", document.text.casefold())))
        if score:
            scored.append((score, document))
    scored.sort(key=lambda pair: (-pair[0], pair[1].name))
    records = [
        {
            "segment": {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, document.id)),
                "position": 1,
                "document_id": document.id,
                "content": document.text,
                "document": {"id": document.id, "data_source_type": "upload_file", "name": document.name},
            },
            "child_chunks": [],
            "score": score / max(len(words), 1),
        }
        for score, document in scored[:top_k]
    ]
    return 200, {"query": {"content": query}, "records": records}


def _document_json(document: FakeDocument) -> dict[str, Any]:
    return {
        "id": document.id,
        "name": document.name,
        "data_source_type": "upload_file",
        "indexing_status": document.status,
        "created_from": "api",
        "doc_form": "text_model",
    }


def _status_json(document: FakeDocument) -> dict[str, Any]:
    done = document.status == "completed"
    return {
        "id": document.id,
        "indexing_status": document.status,
        "error": document.error,
        "completed_segments": 1 if done else 0,
        "total_segments": 1,
    }

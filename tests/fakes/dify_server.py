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
"""

from __future__ import annotations

import json
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
            if self.path != WORKFLOW_RUN_PATH:
                self._error(404, "not_found", "The requested URL was not found on the server.")
            elif headers.get("authorization") != f"Bearer {fake.key}":
                self._error(401, "unauthorized", "Access token is invalid")
            elif problem := _invalid_body(body):
                self._error(400, "invalid_param", problem)
            else:
                self._reply(fake._next_reply(), body["inputs"])

        def do_GET(self) -> None:
            fake._record(DifyRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None))
            self._error(404, "not_found", "The requested URL was not found on the server.")

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

"""A loopback OpenAI-compatible server: ``/v1/chat/completions`` and ``/v1/embeddings`` over real HTTP/1.1.

    with FakeOpenAI() as server:                      # or the ``fake_openai`` fixture
        server.enqueue(Error(429, retry_after="1"), Answer("Hello", input_tokens=12, output_tokens=3))
        ... point PUNCHCLOCK_LLM_BASE_URL at server.base_url ...
        server.requests[0].headers["authorization"], server.requests[1].received_at

Each request takes the next scripted outcome (:class:`Answer`, :class:`Error`, :class:`Hang`), whatever its path;
once the script is empty, ``respond(request)`` decides (default: an :class:`Answer` of ``default_text``). An
``Answer`` to ``/embeddings`` is one deterministic vector per input. ``delay`` (seconds) holds every answer back
without holding up other requests: the server is asyncio (parsed by h11) on its own thread and event loop, so it
serves any number of concurrent connections and works from sync and async tests alike. ``in_flight`` and
``max_in_flight`` count requests being answered, for benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """200: a chat completion of ``text`` (or embeddings), with this usage; ``model`` defaults to the request's."""

    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    finish_reason: str = "stop"
    model: str | None = None


@dataclass(frozen=True)
class Error:
    """An error status with OpenAI's body ``{"error": {"message", "type", "param", "code"}}``; ``retry_after``
    becomes the ``Retry-After`` header (seconds or an HTTP date)."""

    status: int
    message: str = "scripted error"
    retry_after: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class Hang:
    """Read the request, answer nothing for ``seconds``, then close the connection."""

    seconds: float


Outcome = Answer | Error | Hang


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: ``headers`` with lower-case names, ``body`` the parsed JSON (None if not JSON),
    ``received_at`` from ``time.monotonic()``."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float

    @property
    def prompt(self) -> str:
        """Every message's text content (or every embeddings input), one per line: what the model was shown."""
        if not isinstance(self.body, dict):
            return ""
        if "input" in self.body:
            inputs = self.body["input"]
            return "\n".join(inputs) if isinstance(inputs, list) else str(inputs)
        lines = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            lines.append(str(content or ""))
        return "\n".join(lines)


@dataclass
class FakeOpenAI:
    """Start with ``with`` (or :meth:`start` / :meth:`stop`); ``base_url`` is ``http://127.0.0.1:{port}/v1``."""

    delay: float = 0.0
    default_text: str = "ok"
    respond: Callable[[RecordedRequest], Outcome] | None = None
    dimensions: int = 8
    port: int = 0
    _script: deque[Outcome] = field(default_factory=deque, init=False, repr=False)
    _requests: list[RecordedRequest] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _in_flight: int = field(default=0, init=False)
    _max_in_flight: int = field(default=0, init=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event | None = field(default=None, init=False, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _startup_error: BaseException | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def enqueue(self, *outcomes: Outcome) -> None:
        """Append outcomes to the script, answered in order to the next requests."""
        with self._lock:
            self._script.extend(outcomes)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="fake-openai", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._serve(reader, writer)
            except asyncio.CancelledError:  # stopping: end quietly (3.11's streams log a cancelled handler)
                pass
            finally:
                connections.discard(task)

        try:
            server = await asyncio.start_server(serve, HOST, self.port, backlog=4096)
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests in turn (keep-alive) until the client or a :class:`Hang` closes it."""
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _read_request(connection, reader)
                if request is None:
                    return
                if not await self._answer(connection, writer, request):
                    return
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, connection: h11.Connection, writer: asyncio.StreamWriter, request: RecordedRequest) -> bool:
        """Answer one request; False when the connection must close without an answer."""
        with self._lock:
            self._requests.append(request)
            outcome = self._script.popleft() if self._script else None
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if outcome is None:
                outcome = self.respond(request) if self.respond is not None else Answer(self.default_text)
            if isinstance(outcome, Hang):
                await asyncio.sleep(outcome.seconds)
                return False
            if self.delay:
                await asyncio.sleep(self.delay)
            status, headers, body = self._render(request, outcome)
            reason = http.HTTPStatus(status).phrase.encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(body))), *headers]
            writer.write(connection.send(h11.Response(status_code=status, headers=headers, reason=reason)))
            writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
            return True
        finally:
            with self._lock:
                self._in_flight -= 1

    def _render(self, request: RecordedRequest, outcome: Answer | Error) -> tuple[int, list[tuple[str, str]], bytes]:
        if isinstance(outcome, Error):
            kind = outcome.type or ("server_error" if outcome.status >= 500 else "invalid_request_error")
            error = {"message": outcome.message, "type": kind, "param": None, "code": None}
            headers = [("retry-after", outcome.retry_after)] if outcome.retry_after is not None else []
            return outcome.status, headers, json.dumps({"error": error}).encode()
        body = request.body if isinstance(request.body, dict) else {}
        model = outcome.model or str(body.get("model") or "fake-model")
        if request.path.endswith("/embeddings"):
            return 200, [], json.dumps(self._embeddings(body, model, outcome)).encode()
        if request.path.endswith("/chat/completions"):
            return 200, [], json.dumps(_completion(model, outcome)).encode()
        not_found = {"error": {"message": f"no route {request.path}", "type": "invalid_request_error"}}
        return 404, [], json.dumps(not_found).encode()

    def _embeddings(self, body: dict[str, Any], model: str, answer: Answer) -> dict[str, Any]:
        inputs = body.get("input", [])
        inputs = inputs if isinstance(inputs, list) else [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": self.vector(str(text))} for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": answer.input_tokens, "total_tokens": answer.input_tokens}
        return {"object": "list", "data": data, "model": model, "usage": usage}

    def vector(self, text: str) -> list[float]:
        """The embedding this server gives ``text``: deterministic, ``dimensions`` long, each value in [-1, 1)."""
        digest = hashlib.sha256(text.encode()).digest()
        return [digest[i % len(digest)] / 128 - 1 for i in range(self.dimensions)]


def _completion(model: str, answer: Answer) -> dict[str, Any]:
    usage = {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": answer.text},
        "finish_reason": answer.finish_reason,
    }
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


async def _read_request(connection: h11.Connection, reader: asyncio.StreamReader) -> RecordedRequest | None:
    """The next whole request on the connection, or None when the client closed it."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            received_at = time.monotonic()
            headers = {name.decode().lower(): value.decode() for name, value in head.headers}
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            path = head.target.decode().split("?", 1)[0]
            return RecordedRequest(head.method.decode(), path, headers, parsed, received_at)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started :class:`FakeOpenAI` for one test; import it into a conftest (or a test module) to use it."""
    with FakeOpenAI() as server:
        yield server

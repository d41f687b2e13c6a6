"""The HTTP source against a loopback server that honours ETag and Last-Modified as a real one does, and counts
the requests it receives and the bodies it sends: a second scan must download nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from tenacity import wait_none

from app.errors import InvalidInput
from app.kb.sources.base import Failed, Fetched, Outcome, Unchanged, sha256
from app.kb.sources.http import HttpSource
from app.kb.store import SourceState

SECRET = "Bearer wiki-token-5f4e3d"


@dataclass
class Document:
    body: bytes
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Server:
    """``documents`` by path; ``failures[path]`` statuses answered first, one per request; ``/slow`` answers
    nothing until the test ends. ``requests`` and ``bodies`` count what arrived and what was sent, by path."""

    base: str
    documents: dict[str, Document] = field(default_factory=dict)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    received: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # the headers of each request, by path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    released = threading.Event()
    state = Server("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with state.lock:
                state.requests[self.path] += 1
                state.headers.append(dict(self.headers.items()))
                state.received.setdefault(self.path, []).append(dict(self.headers.items()))
                failures = state.failures.get(self.path)
                failure = failures.pop(0) if failures else None
                document = state.documents.get(self.path)
                redirect = state.redirects.get(self.path)
            if self.path == "/slow":
                released.wait()  # past the client's timeout: it gives up first
                return
            if redirect is not None:
                self.answer(302, b"", {"Location": redirect})
            elif failure is not None:
                self.answer(failure[0], b"try later", failure[1])
            elif document is None:
                self.answer(404, b"not found", {})
            elif self.not_modified(document):
                self.answer(304, b"", self.validators(document))
            else:
                self.answer(200, document.body, self.validators(document))
                with state.lock:
                    state.bodies[self.path] += 1

        def not_modified(self, document: Document) -> bool:
            # RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only when there is no If-None-Match.
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:
                return document.etag is not None and if_none_match == document.etag
            since = self.headers.get("If-Modified-Since")
            return since is not None and since == document.last_modified

        @staticmethod
        def validators(document: Document) -> dict[str, str]:
            headers = {"ETag": document.etag, "Last-Modified": document.last_modified}
            return {name: value for name, value in headers.items() if value is not None}

        def answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    released.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def scan(source: HttpSource, known: dict[str, SourceState], http: httpx.AsyncClient) -> list[Outcome]:
    return [outcome async for outcome in source.scan(known, http)]


def states(outcomes: list[Outcome]) -> dict[str, SourceState]:
    return {o.key: o.state for o in outcomes if isinstance(o, Fetched | Unchanged)}


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def source(*urls: str, **options: Any) -> HttpSource:
    return HttpSource(urls, backoff=wait_none(), **options)


async def test_a_second_scan_downloads_nothing(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/a.md"] = Document(b"# A\n\nalpha", etag='"a1"')
    server.documents["/b.html"] = Document(b"<p>beta</p>", last_modified=formatdate(1_700_000_000, usegmt=True))
    server.documents["/c.txt"] = Document(b"gamma", etag='W/"c1"', last_modified=formatdate(1_700_000_000, usegmt=True))
    urls = [server.url(path) for path in ("/a.md", "/b.html", "/c.txt")]

    first = await scan(source(*urls), {}, http)
    assert [type(o) for o in first] == [Fetched, Fetched, Fetched]
    assert [o.key for o in first] == urls  # in the order the definition lists them
    fetched = first[0]
    assert isinstance(fetched, Fetched)
    assert fetched.data == b"# A\n\nalpha"
    assert fetched.state.etag == '"a1"'
    assert fetched.state.sha256 == sha256(b"# A\n\nalpha")
    assert fetched.state.size == len(b"# A\n\nalpha")
    assert states(first)[urls[1]].last_modified == formatdate(1_700_000_000, usegmt=True)  # as the server sent it
    assert sum(server.bodies.values()) == 3

    second = await scan(source(*urls), states(first), http)
    assert [type(o) for o in second] == [Unchanged, Unchanged, Unchanged]
    assert sum(server.bodies.values()) == 3  # every answer a 304: zero bodies downloaded
    assert server.requests == Counter({"/a.md": 2, "/b.html": 2, "/c.txt": 2})
    for outcome in second:
        previous = states(first)[outcome.key]
        assert isinstance(outcome, Unchanged)
        assert outcome.state.sha256 == previous.sha256
        assert outcome.state.last_seen_at is not None and previous.last_seen_at is not None
        assert outcome.state.last_seen_at >= previous.last_seen_at
    conditional = server.headers[3:]
    assert conditional[0]["If-None-Match"] == '"a1"' and "If-Modified-Since" not in conditional[0]
    assert conditional[1]["If-Modified-Since"] == formatdate(1_700_000_000, usegmt=True)
    assert conditional[2]["If-None-Match"] == 'W/"c1"'  # a weak ETag is sent back as it came


async def test_a_changed_document_is_fetched(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/a.md"] = Document(b"old", etag='"v1"')
    server.documents["/b.md"] = Document(b"same", etag='"b1"')
    urls = [server.url("/a.md"), server.url("/b.md")]
    first = await scan(source(*urls), {}, http)

    server.documents["/a.md"] = Document(b"new", etag='"v2"')
    second = await scan(source(*urls), states(first), http)
    changed, same = second
    assert isinstance(changed, Fetched) and changed.data == b"new"
    assert changed.state.etag == '"v2"' and changed.state.sha256 == sha256(b"new")
    assert isinstance(same, Unchanged)
    assert server.bodies == Counter({"/a.md": 2, "/b.md": 1})


async def test_without_validators_the_same_bytes_are_unchanged(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/plain.txt"] = Document(b"no validators here")
    url = server.url("/plain.txt")
    first = await scan(source(url), {}, http)
    second = await scan(source(url), states(first), http)
    assert isinstance(second[0], Unchanged)  # downloaded again, but the sha256 says nothing changed
    assert server.bodies["/plain.txt"] == 2
    assert second[0].state.sha256 == sha256(b"no validators here")

    # a server whose ETag changes on every response, as some CDNs do, with the same bytes: Unchanged too
    server.documents["/plain.txt"] = Document(b"no validators here", etag='"fresh-every-time"')
    third = await scan(source(url), states(second), http)
    assert isinstance(third[0], Unchanged)
    assert third[0].state.etag == '"fresh-every-time"'  # the new validators are kept for the next scan

    server.documents["/plain.txt"] = Document(b"edited")
    fourth = await scan(source(url), states(third), http)
    assert isinstance(fourth[0], Fetched) and fourth[0].data == b"edited"


async def test_a_503_is_retried(server: Server, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    server.documents["/flaky.md"] = Document(b"there after all", etag='"f1"')
    server.failures["/flaky.md"] = [(503, {}), (503, {"Retry-After": "0"})]
    caplog.set_level(logging.INFO)
    outcomes = await scan(source(server.url("/flaky.md"), headers={"Authorization": SECRET}), {}, http)
    assert isinstance(outcomes[0], Fetched) and outcomes[0].data == b"there after all"
    assert server.requests["/flaky.md"] == 3
    assert all(headers["Authorization"] == SECRET for headers in server.headers)  # sent every time
    assert "HTTPStatusError 503" in caplog.text
    assert "wiki-token" not in caplog.text  # never logged


async def test_a_long_retry_after_is_left_to_the_next_reindex(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/busy.md"] = Document(b"later")
    server.failures["/busy.md"] = [(429, {"Retry-After": "3600"})]
    outcomes = await scan(source(server.url("/busy.md"), max_retry_after=5), {}, http)
    assert isinstance(outcomes[0], Failed) and outcomes[0].transient
    assert "429" in outcomes[0].error
    assert server.requests["/busy.md"] == 1


async def test_a_404_fails_at_once_and_is_not_gone(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/kept.md"] = Document(b"kept")
    urls = [server.url("/missing.md"), server.url("/kept.md")]
    known = {urls[0]: SourceState(urls[0], etag='"old"', sha256=sha256(b"was here"))}
    missing, kept = await scan(source(*urls), known, http)
    assert missing == Failed(urls[0], "HTTPStatusError 404 Not Found, after 1 attempt(s)", False)
    assert server.requests["/missing.md"] == 1  # a 404 is not retried
    assert isinstance(kept, Fetched)


async def test_a_timeout_fails_transiently_after_the_retries(server: Server, http: httpx.AsyncClient) -> None:
    outcomes = await scan(source(server.url("/slow"), timeout=0.2, attempts=3), {}, http)
    failed = outcomes[0]
    assert isinstance(failed, Failed) and failed.transient
    assert "ReadTimeout" in failed.error and "after 3 attempt(s)" in failed.error
    await wait_for(lambda: server.requests["/slow"] == 3, "three attempts at the server")


async def test_a_refused_connection_fails_transiently(http: httpx.AsyncClient) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}/gone.md"
    outcomes = await scan(source(url, attempts=2), {}, http)
    assert isinstance(outcomes[0], Failed) and outcomes[0].transient
    assert "ConnectError" in outcomes[0].error


async def test_headers_follow_a_redirect_only_within_the_origin(server: Server, http: httpx.AsyncClient) -> None:
    server.documents["/new/a.md"] = Document(b"moved here")
    server.redirects["/old/a.md"] = "/new/a.md"  # the same origin: the headers go along
    port = server.base.rsplit(":", 1)[1]
    server.redirects["/away/a.md"] = f"http://localhost:{port}/new/a.md"  # another origin (host): they do not
    headers = {"X-Api-Key": SECRET}
    same, away = await scan(source(server.url("/old/a.md"), server.url("/away/a.md"), headers=headers), {}, http)
    assert isinstance(same, Fetched) and same.data == b"moved here" and same.key == server.url("/old/a.md")
    assert isinstance(away, Fetched) and away.data == b"moved here"
    first, second = server.received["/new/a.md"]
    assert first["X-Api-Key"] == SECRET
    assert "X-Api-Key" not in second
    assert server.received["/away/a.md"][0]["X-Api-Key"] == SECRET


async def test_a_redirect_loop_fails(server: Server, http: httpx.AsyncClient) -> None:
    server.redirects["/loop"] = "/loop"
    outcomes = await scan(source(server.url("/loop")), {}, http)
    assert isinstance(outcomes[0], Failed) and not outcomes[0].transient
    assert "more than 5 redirects" in outcomes[0].error
    assert server.requests["/loop"] == 6


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        (["ftp://example.com/a.md"], 'URL "ftp://example.com/a.md": only http:// and https://'),
        (["https:///a.md"], 'URL "https:///a.md"'),
        (["file:///etc/passwd"], 'URL "file:///etc/passwd": only http'),
        (["https://a.example/x", "https://a.example/x"], "listed twice"),
        ([], "at least one URL"),
        ("https://a.example/x", "not one string"),
    ],
)
def test_bad_urls_are_refused_by_name(urls: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?")):
        HttpSource(urls)

"""The S3 source against moto's S3 in server mode on a loopback port, with moto's request authentication on:
moto recomputes every request's Signature V4 with botocore's signer and refuses one that differs, so these tests
also check our signing (host with its port, encoded keys, continuation tokens) end to end.

Requests are counted on the client side, with an httpx event hook on the AsyncClient handed to the scan: every
request the source makes goes through it, so "no object was downloaded" is a count of GETs of object URLs.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

from app.errors import ConfigurationError
from app.kb.sources.base import Failed, Fetched, Outcome, Unchanged, sha256
from app.kb.sources.s3 import S3Source
from app.kb.store import SourceState
from app.transient import PermanentError, TransientError

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Bucket:
    endpoint: str
    name: str
    environ: dict[str, str]
    client: Any  # boto3's S3 client, to set the bucket up as another program would

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def source(self, prefix: str = "", **options: Any) -> S3Source:
        defaults: dict[str, Any] = {"endpoint_url": self.endpoint, "region": REGION, "environ": self.environ}
        return S3Source(self.name, prefix, **{**defaults, **options})


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket, and the keys of an IAM user allowed S3; from here on moto checks every signature."""
    iam = boto3.client(
        "iam", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="admin", aws_secret_access_key="admin"
    )
    user = f"kb-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    name = f"kb-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    environ = {"KB_S3_KEY_ID": key["AccessKeyId"], "KB_S3_SECRET": key["SecretAccessKey"]}
    return Bucket(moto_endpoint, name, environ, s3)


@dataclass
class Counted:
    client: httpx.AsyncClient
    requests: list[httpx.Request]
    before: list[Callable[[httpx.Request], None]]  # what else happens as a request leaves

    def object_gets(self) -> list[str]:
        """The paths of the object downloads (a listing carries ``list-type=2``)."""
        return [r.url.path for r in self.requests if r.method == "GET" and b"list-type=2" not in r.url.query]

    def listings(self) -> int:
        return sum(b"list-type=2" in r.url.query for r in self.requests)


@pytest.fixture
async def http() -> AsyncIterator[Counted]:
    requests: list[httpx.Request] = []
    before: list[Callable[[httpx.Request], None]] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)
        for hook in before:
            hook(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        yield Counted(client, requests, before)


def source_options() -> dict[str, Any]:
    return {"access_key_env": "KB_S3_KEY_ID", "secret_key_env": "KB_S3_SECRET", "max_keys": 2, "attempts": 2}


async def scan(source: S3Source, known: dict[str, SourceState], http: Counted) -> list[Outcome]:
    return [outcome async for outcome in source.scan(known, http.client)]


def states(outcomes: list[Outcome]) -> dict[str, SourceState]:
    return {o.key: o.state for o in outcomes if isinstance(o, Fetched | Unchanged)}


DOCUMENTS = {
    "docs/a.md": b"# A\n\nalpha",
    "docs/b.txt": b"beta",
    "docs/guide/c.html": b"<p>gamma</p>",
    "docs/中文 笔记+1.md": "# 笔记\n\n内容".encode(),  # a key to encode: spaces, a plus, CJK
    "docs/report.PDF": b"%PDF-1.4 not really",
}


async def test_scans_fetch_then_download_nothing_then_only_the_change(bucket: Bucket, http: Counted) -> None:
    for key, body in DOCUMENTS.items():
        bucket.put(key, body)
    bucket.put("docs/logo.png", b"\x89PNG")  # not a format the knowledge base reads: not listed
    bucket.put("docs/empty-folder/", b"")  # a console's "folder"
    bucket.put("elsewhere/z.md", b"outside the prefix")
    source = bucket.source("docs/", **source_options())

    first = await scan(source, {}, http)
    assert all(isinstance(o, Fetched) for o in first), first
    assert [o.key for o in first] == sorted(f"s3://{bucket.name}/{key}" for key in DOCUMENTS)
    assert {o.key: o.data for o in first if isinstance(o, Fetched)} == {
        f"s3://{bucket.name}/{key}": body for key, body in DOCUMENTS.items()
    }
    a = states(first)[f"s3://{bucket.name}/docs/a.md"]
    assert a.sha256 == sha256(DOCUMENTS["docs/a.md"]) and a.size == len(DOCUMENTS["docs/a.md"])
    assert a.etag is not None and a.etag.startswith('"')
    assert http.listings() == 4  # 7 objects under docs/, 2 a page: the continuation tokens were followed
    assert len(http.object_gets()) == len(DOCUMENTS)

    http.requests.clear()
    second = await scan(source, states(first), http)
    assert all(isinstance(o, Unchanged) for o in second), second
    assert [o.key for o in second] == [o.key for o in first]
    assert http.object_gets() == []  # the ETags and sizes matched: no object downloaded
    assert states(second)[a.source_key].sha256 == a.sha256

    bucket.put("docs/b.txt", b"beta, edited")
    bucket.client.delete_object(Bucket=bucket.name, Key="docs/guide/c.html")
    http.requests.clear()
    third = await scan(source, states(second), http)
    by_key = {o.key: o for o in third}
    assert f"s3://{bucket.name}/docs/guide/c.html" not in by_key  # deleted: absent from the listing
    changed = by_key[f"s3://{bucket.name}/docs/b.txt"]
    assert isinstance(changed, Fetched) and changed.data == b"beta, edited"
    assert changed.state.etag != states(second)[changed.key].etag
    assert sum(isinstance(o, Unchanged) for o in third) == len(DOCUMENTS) - 2
    assert http.object_gets() == [f"/{bucket.name}/docs/b.txt"]


async def test_a_new_etag_with_the_same_bytes_is_unchanged(bucket: Bucket, http: Counted) -> None:
    bucket.put("a.md", b"same bytes")
    source = bucket.source(**source_options())
    first = await scan(source, {}, http)
    # as if the object had been re-uploaded in parts: another ETag, the same content
    known = {
        key: SourceState(key, etag='"other-2"', sha256=state.sha256, size=state.size)
        for key, state in states(first).items()
    }
    http.requests.clear()
    again = await scan(source, known, http)
    assert isinstance(again[0], Unchanged)
    assert again[0].state.etag == states(first)[again[0].key].etag  # the new ETag, kept for the next scan
    assert len(http.object_gets()) == 1  # downloaded to compare: the sha256 said unchanged


async def test_every_object_when_suffixes_is_none(bucket: Bucket, http: Counted) -> None:
    bucket.put("logo.png", b"\x89PNG")
    bucket.put("notes", b"no extension")
    keys = [o.key for o in await scan(bucket.source(suffixes=None, **source_options()), {}, http)]
    assert keys == [f"s3://{bucket.name}/logo.png", f"s3://{bucket.name}/notes"]


async def test_a_missing_bucket_raises_naming_it(bucket: Bucket, http: Counted) -> None:
    source = S3Source("no-such-bucket-here", endpoint_url=bucket.endpoint, environ=bucket.environ, **source_options())
    with pytest.raises(PermanentError, match="NoSuchBucket") as raised:
        await scan(source, {}, http)
    assert "s3://no-such-bucket-here/" in str(raised.value)
    assert "check the bucket name" in str(raised.value)
    assert http.listings() == 1  # a 404 is not retried


async def test_wrong_credentials_raise_naming_the_variables(bucket: Bucket, http: Counted) -> None:
    environ = {**bucket.environ, "KB_S3_SECRET": "not-the-secret-key-0123456789"}
    with pytest.raises(PermanentError, match="KB_S3_KEY_ID and KB_S3_SECRET") as raised:
        await scan(bucket.source(**{**source_options(), "environ": environ}), {}, http)
    assert "HTTP 403" in str(raised.value)
    assert "SignatureDoesNotMatch" in str(raised.value)
    assert bucket.environ["KB_S3_SECRET"] not in str(raised.value)
    assert "not-the-secret" not in str(raised.value)


async def test_a_missing_variable_raises_naming_it(bucket: Bucket, http: Counted) -> None:
    environ = {"KB_S3_KEY_ID": bucket.environ["KB_S3_KEY_ID"]}
    with pytest.raises(ConfigurationError, match="set KB_S3_SECRET to the secret access key"):
        await scan(bucket.source(**{**source_options(), "environ": environ}), {}, http)
    assert http.requests == []


async def test_an_unreachable_endpoint_raises_a_transient_error(bucket: Bucket, http: Counted) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    source = S3Source("kb-docs", endpoint_url=closed, environ=bucket.environ, **source_options())
    with pytest.raises(TransientError, match=r"listing failed: ConnectError: .*, after 2 attempt"):
        await scan(source, {}, http)
    assert http.listings() == 2


async def test_an_object_that_cannot_be_read_fails_alone(bucket: Bucket, http: Counted) -> None:
    bucket.put("a.md", b"alpha")
    bucket.put("b.md", b"beta")

    def delete_a_before_its_get(request: httpx.Request) -> None:
        # listed, then deleted by someone else before the source's GET of it: the GET answers 404
        if request.url.path.endswith("/a.md"):
            bucket.client.delete_object(Bucket=bucket.name, Key="a.md")

    http.before.append(delete_a_before_its_get)
    a, b = await scan(bucket.source(**source_options()), {}, http)
    assert isinstance(a, Failed) and "404" in a.error and not a.transient
    assert isinstance(b, Fetched) and b.data == b"beta"


@pytest.fixture
def slow_down() -> Iterator[str]:
    """A loopback endpoint that answers every request as S3 does when throttling: 503 SlowDown."""
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


async def test_a_throttled_listing_is_retried_then_raises_a_transient_error(slow_down: str, http: Counted) -> None:
    environ = {"KB_S3_KEY_ID": "AKIDEXAMPLE", "KB_S3_SECRET": "secret-for-the-loopback-0123"}
    source = S3Source("kb-docs", endpoint_url=slow_down, environ=environ, **{**source_options(), "attempts": 3})
    with pytest.raises(TransientError, match="HTTPStatusError 503") as raised:
        await scan(source, {}, http)
    assert http.listings() == 3
    assert raised.value.retry_after == 0

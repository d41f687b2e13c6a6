"""A knowledge base pushed to a Dify dataset (app/kb/dify_sync.py, app/kb/dify_dataset.py) during reindex: folder
sources in tmp_path, the real PostgreSQL, the lexical embedder, and the loopback Dify (tests/fakes/dify_server.py)
serving a dataset of the Knowledge API over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tenacity import wait_none

from app.errors import ConfigurationError
from app.kb import store
from app.kb.definition import DifyTarget, Folder, KnowledgeBase
from app.kb.dify_dataset import DifyDatasetClient
from app.kb.dify_sync import ClientFactory
from app.kb.embedders import Lexical
from app.kb.gate import Gate, GoldenQuery
from app.kb.lifecycle import GenerationState
from app.kb.reindex import reindex
from app.transient import PermanentError
from tests.fakes.dify_server import FakeDify, HttpError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEY = "dataset-s3cr3t-handbook-key-0123456789"
KEY_ENV = "DIFY_HANDBOOK_KEY"


@pytest.fixture
def dify() -> Iterator[FakeDify]:
    with FakeDify(dataset_key=KEY, indexing_polls=2) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def clients(
    http: httpx.AsyncClient, *, environ: dict[str, str] | None = None, spans: InMemorySpanExporter | None = None
) -> ClientFactory:
    """Clients as production builds them, without waits between attempts and polls."""
    provider = TracerProvider()
    if spans is not None:
        provider.add_span_processor(SimpleSpanProcessor(spans))

    def make(target: DifyTarget) -> DifyDatasetClient:
        return DifyDatasetClient(
            http,
            target,
            {KEY_ENV: KEY} if environ is None else environ,
            backoff=wait_none(),
            poll_interval=0.0,
            tracer_provider=provider,
        )

    return make


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text, encoding="utf-8")


async def define(pool: asyncpg.Pool[Any], kb: KnowledgeBase) -> None:
    async with pool.acquire() as conn:
        await store.upsert_kb(conn, kb.name, kb.to_json(), embedder_id=Lexical().id, dims=Lexical().dims)


async def dify_rows(pool: asyncpg.Pool[Any]) -> dict[str, tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT source_key, dataset_id, document_id FROM kb_dify_documents")
    return {row["source_key"]: (row["dataset_id"], row["document_id"]) for row in rows}


async def generation_states(pool: asyncpg.Pool[Any]) -> list[tuple[int, GenerationState]]:
    async with pool.acquire() as conn:
        return [(g.number, g.state) for g in await store.list_generations(conn, "docs")]


def knowledge_base(root: Path, dify: FakeDify, **kwargs: Any) -> KnowledgeBase:
    gate = kwargs.pop("dify_gate", False)
    target = DifyTarget(dify.base_url, dify.dataset_id, KEY_ENV, gate=gate)
    return KnowledgeBase("docs", sources=[Folder(str(root), "*.md")], dify=target, **kwargs)


async def test_documents_are_created_updated_and_deleted_in_dify_as_the_sources_change(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "Alpha is the first letter.")
    write(tmp_path, "b.md", "Beta is the second letter.")
    write(tmp_path, "c.md", "Gamma is the third letter.")
    await define(pool, knowledge_base(tmp_path, dify))

    first = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert first.activated and first.dify is not None
    assert (first.dify.created, first.dify.updated, first.dify.deleted) == (3, 0, 0)
    assert dify.names() == {
        "a.md": "Alpha is the first letter.",
        "b.md": "Beta is the second letter.",
        "c.md": "Gamma is the third letter.",
    }
    creates = dify.dataset_requests("create-by-text")
    assert creates[0].path == f"/v1/datasets/{dify.dataset_id}/document/create-by-text"
    assert creates[0].headers["authorization"] == f"Bearer {KEY}"
    assert creates[0].body["process_rule"] == {"mode": "automatic"}
    assert creates[0].body["indexing_technique"] == "high_quality"
    # every batch polled until Dify said completed (indexing_polls=2: the third poll sees it)
    polls = dify.dataset_requests("indexing-status")
    assert len(polls) == 3 * 3
    assert all(doc.status == "completed" for doc in dify.documents.values())
    rows = await dify_rows(pool)
    assert {key: dataset for key, (dataset, _) in rows.items()} == dict.fromkeys(
        ("a.md", "b.md", "c.md"), dify.dataset_id
    )
    ids = {key: document for key, (_, document) in rows.items()}

    write(tmp_path, "a.md", "Alpha is the first letter, and it was edited.")
    (tmp_path / "b.md").unlink()
    write(tmp_path, "d.md", "Delta is the fourth letter.")
    before = len(dify.dataset_requests())

    second = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert second.dify is not None
    assert (second.dify.created, second.dify.updated, second.dify.deleted) == (1, 1, 1)
    assert second.summary().endswith(f"; Dify dataset {dify.dataset_id}: 1 created, 1 updated, 1 deleted")
    assert dify.names() == {
        "a.md": "Alpha is the first letter, and it was edited.",
        "c.md": "Gamma is the third letter.",
        "d.md": "Delta is the fourth letter.",
    }
    sent = dify.dataset_requests()[before:]
    assert [r.path for r in sent if r.method == "POST"] == [
        f"/v1/datasets/{dify.dataset_id}/document/create-by-text",  # d.md
        f"/v1/datasets/{dify.dataset_id}/documents/{ids['a.md']}/update-by-text",
    ]
    assert [r.path for r in sent if r.method == "DELETE"] == [f"/v1/datasets/{dify.dataset_id}/documents/{ids['b.md']}"]
    rows = await dify_rows(pool)
    assert sorted(rows) == ["a.md", "c.md", "d.md"]
    assert rows["a.md"][1] == ids["a.md"] and rows["c.md"][1] == ids["c.md"]

    # a full rescan reads every document again; Dify already holds each text, so nothing is pushed
    before = len(dify.dataset_requests())
    third = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http), full=True)
    assert third.dify is not None and (third.dify.created, third.dify.updated, third.dify.unchanged) == (0, 0, 3)
    assert dify.dataset_requests()[before:] == []


async def test_the_dify_gate_scores_the_golden_queries_through_retrieve_and_a_miss_fails_the_reindex(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "postgres.md", "PostgreSQL stores the runs. Vacuum runs every night at two.")
    rabbit = "RabbitMQ carries the messages between the clock and the workers."
    write(tmp_path, "rabbit.md", rabbit)
    golden = GoldenQuery("when does vacuum run", expected_sources=("postgres.md",))
    kb = knowledge_base(tmp_path, dify, golden=[golden], gate=Gate(), golden_k=2, dify_gate=True)
    await define(pool, kb)

    first = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert first.activated and first.dify is not None and first.dify.verdict is not None
    assert first.dify.verdict.passed and first.dify.verdict.candidate.hit_at_k == 1.0
    [retrieve] = dify.dataset_requests("retrieve")
    assert retrieve.path == f"/v1/datasets/{dify.dataset_id}/retrieve"
    assert retrieve.body["query"] == "when does vacuum run"
    assert retrieve.body["retrieval_model"]["top_k"] == 2
    assert retrieve.body["retrieval_model"]["search_method"] == "semantic_search"
    async with pool.acquire() as conn:
        active = (await store.list_generations(conn, "docs"))[0]
    assert active.gate_results["dify"]["candidate"]["hit_at_k"] == 1.0  # what the next Dify gate compares with

    # someone deletes the document in Dify's console; the local generation still has it
    postgres = next(doc.id for doc in dify.documents.values() if doc.name == "postgres.md")
    del dify.documents[postgres]
    write(tmp_path, "rabbit.md", "RabbitMQ carries the messages. It was edited.")

    with pytest.raises(PermanentError, match=r'Dify dataset .* failed the gate .*"when does vacuum run"'):
        await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert await generation_states(pool) == [(1, GenerationState.ACTIVE), (2, GenerationState.FAILED)]
    async with pool.acquire() as conn:
        failed = (await store.list_generations(conn, "docs"))[1]
        assert "failed the gate" in (failed.error or "")
        # the states still describe generation 1: the next run reads rabbit.md again
        states = await store.get_source_states(conn, "docs")
    assert states["rabbit.md"].sha256 == hashlib.sha256(rabbit.encode()).hexdigest()
    assert dify.names()["rabbit.md"] == "RabbitMQ carries the messages. It was edited."  # Dify has no generations


async def test_a_400_from_dify_fails_the_reindex_permanently_with_its_message(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "Alpha is the first letter.")
    await define(pool, knowledge_base(tmp_path, dify))
    dify.dataset_errors(HttpError(400, "invalid_param", "indexing_technique is required."))

    with pytest.raises(PermanentError, match=r"HTTP 400: invalid_param: indexing_technique is required\."):
        await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert len(dify.dataset_requests("create-by-text")) == 1  # not retried
    assert await generation_states(pool) == [(1, GenerationState.FAILED)]
    assert await dify_rows(pool) == {}


async def test_a_503_from_dify_is_retried_and_each_call_is_traced_without_the_key(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "Alpha is the first letter.")
    await define(pool, knowledge_base(tmp_path, dify))
    dify.dataset_errors(HttpError(503, "service_unavailable", f"overloaded (key {KEY})"))
    spans = InMemorySpanExporter()

    report = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http, spans=spans))

    assert report.activated and report.dify is not None and report.dify.created == 1
    assert len(dify.dataset_requests("create-by-text")) == 2
    assert list(dify.names()) == ["a.md"]
    finished = spans.get_finished_spans()
    assert [span.name for span in finished][:2] == ["dify dataset create", "dify dataset indexing-status"]
    create = finished[0]
    assert create.attributes is not None
    assert create.attributes["dify.dataset_id"] == dify.dataset_id
    assert create.attributes["http.response.status_code"] == 200
    assert all(KEY not in repr(dict(span.attributes or {})) for span in finished)


async def test_an_unset_key_variable_fails_before_any_request(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "Alpha is the first letter.")
    await define(pool, knowledge_base(tmp_path, dify))

    with pytest.raises(ConfigurationError, match=f"set {KEY_ENV} to the dataset API key"):
        await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http, environ={}))

    assert dify.dataset_requests() == []
    assert await generation_states(pool) == []  # refused before the scan: nothing was built for nothing


async def test_a_document_deleted_in_dify_is_created_again_and_one_left_blank_is_deleted(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, dify: FakeDify, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "Alpha is the first letter.")
    write(tmp_path, "b.md", "Beta is the second letter.")
    await define(pool, knowledge_base(tmp_path, dify))
    await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))
    dify.documents = {id_: doc for id_, doc in dify.documents.items() if doc.name != "a.md"}  # deleted by hand
    write(tmp_path, "a.md", "Alpha is the first letter, edited.")
    write(tmp_path, "b.md", "   \n")

    report = await reindex(pool, "docs", http=http, embedder=Lexical(), now=NOW, dify=clients(http))

    assert report.dify is not None and (report.dify.created, report.dify.updated, report.dify.deleted) == (1, 0, 1)
    assert dify.names() == {"a.md": "Alpha is the first letter, edited."}
    rows = await dify_rows(pool)
    assert sorted(rows) == ["a.md"]
    assert rows["a.md"][1] == next(iter(dify.documents))

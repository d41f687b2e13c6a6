"""The reindex pipeline (app/kb/reindex.py) end to end: folder sources in tmp_path, the real PostgreSQL with
pgvector, the lexical embedder and a remote one served by the loopback FakeOpenAI, which counts what it embeds."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pypdf import PdfWriter

from app.ai.config import LLMConfig
from app.errors import ConfigurationError
from app.kb import reindex as reindex_module
from app.kb import store
from app.kb.definition import Folder, KnowledgeBase
from app.kb.embedders import Embedder, Lexical, RemoteEmbedder, make_embedder
from app.kb.gate import Gate, GoldenQuery
from app.kb.lifecycle import GenerationState
from app.kb.reindex import Progress, reindex
from app.kb.sources.base import Failed, Fetched, Unchanged
from app.kb.sources.folder import FolderSource
from app.settings import Settings
from app.transient import PermanentError
from tests.fakes.openai_server import Answer, Error, FakeOpenAI

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(dimensions=16) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def remote(http: httpx.AsyncClient, fake: FakeOpenAI, **kwargs: Any) -> Embedder:
    config = LLMConfig.from_settings(Settings(embedding_base_url=fake.base_url, embedding_model="fake-embed"))
    return make_embedder("openai", http, config, **kwargs)


def embedded_texts(fake: FakeOpenAI) -> list[str]:
    """Every text the loopback embeddings server was sent, in order."""
    return [text for request in fake.requests if request.path.endswith("/embeddings") for text in request.body["input"]]


async def define(pool: asyncpg.Pool[Any], kb: KnowledgeBase, embedder: Embedder) -> None:
    async with pool.acquire() as conn:
        await store.upsert_kb(conn, kb.name, kb.to_json(), embedder_id=embedder.id, dims=embedder.dims or 1)


async def chunk_sources(pool: asyncpg.Pool[Any], generation_number: int, kb: str = "docs") -> list[str]:
    async with pool.acquire() as conn:
        generation = next(g for g in await store.list_generations(conn, kb) if g.number == generation_number)
        rows = await conn.fetch("SELECT source_key FROM kb_chunks WHERE generation = $1", generation.id)
    return sorted(row["source_key"] for row in rows)


async def states(pool: asyncpg.Pool[Any], kb: str = "docs") -> list[tuple[int, GenerationState]]:
    async with pool.acquire() as conn:
        return [(g.number, g.state) for g in await store.list_generations(conn, kb)]


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def document(i: int) -> str:
    return f"Document {i} is about topic number {i}. It holds one short paragraph."


async def test_only_changed_and_added_documents_are_embedded_and_deleted_ones_are_gone(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake: FakeOpenAI, tmp_path: Path
) -> None:
    for i in range(1000):
        write(tmp_path, f"d/{i:04}.md", document(i))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path), "**/*.md")], embedder="openai")
    embedder = remote(http, fake)
    await define(pool, kb, embedder)
    seen: list[Progress] = []

    first = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW, progress=seen.append)

    assert (first.scanned, first.fetched, first.embedded, first.generation, first.activated) == (
        1000,
        1000,
        1000,
        1,
        True,
    )
    assert len(embedded_texts(fake)) == 1000
    assert embedder.dims == 16  # learned from the first answer
    assert seen[-1] == Progress(scanned=1000, embedded=1000, expected=0)
    print(f"\n1,000-document first reindex: {first.seconds:.2f} s")

    changed = [f"d/{i:04}.md" for i in range(0, 100, 10)]
    for key in changed:
        write(tmp_path, key, document(int(key[2:6])) + " It was edited, and is longer now.")
    deleted = ["d/0001.md", "d/0002.md"]
    for key in deleted:
        (tmp_path / key).unlink()
    added = ["d/new/a.md", "d/new/b.md", "d/new/c.md"]
    for n, key in enumerate(added):
        write(tmp_path, key, f"A new document, number {n}, added after the first reindex.")
    before = len(fake.requests)

    second = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    sent = [text for request in fake.requests[before:] for text in request.body["input"]]
    expected = sorted((tmp_path / key).read_text() for key in changed + added)
    assert sorted(sent) == expected  # exactly the changed and added documents' chunks, each once
    assert (second.fetched, second.unchanged, second.embedded, second.carried) == (13, 988, 13, 988)
    assert (second.generation, second.activated, second.changed) == (2, True, True)
    assert sorted(second.gone) == deleted
    sources = await chunk_sources(pool, 2)
    assert len(sources) == 1001
    assert not set(deleted) & set(sources)
    assert set(added) <= set(sources)
    assert await states(pool) == [(1, GenerationState.RETIRED), (2, GenerationState.ACTIVE)]
    async with pool.acquire() as conn:
        assert set(deleted).isdisjoint(await store.get_source_states(conn, "docs"))
    print(f"1,000-document incremental reindex: {second.seconds:.2f} s")

    before = len(fake.requests)
    third = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert len(fake.requests) == before  # nothing embedded
    assert (third.changed, third.activated, third.generation, third.unchanged) == (False, False, 2, 1001)
    assert await states(pool) == [(1, GenerationState.RETIRED), (2, GenerationState.ACTIVE)]


async def test_a_changed_embedder_embeds_everything_again_and_a_new_model_is_a_new_embedder(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake: FakeOpenAI, tmp_path: Path
) -> None:
    for i in range(5):
        write(tmp_path, f"{i}.md", document(i))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))])
    lexical = Lexical(64)
    await define(pool, kb, lexical)
    await reindex(pool, "docs", http=http, embedder=lexical, now=NOW)
    embedder = remote(http, fake, dims=16)
    assert embedder.id == "openai:127.0.0.1:fake-embed"

    report = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert (report.embedder_changed, report.fetched, report.embedded, report.carried) == (True, 5, 5, 0)
    async with pool.acquire() as conn:
        row = await store.get_kb(conn, "docs")
        hits = await store.search_active(conn, "docs", fake.vector(document(3)), 1, embedder_id=embedder.id)
    assert (row.embedder_id, row.dims) == (embedder.id, 16)
    assert hits[0].source == "3.md"


async def test_a_gate_failure_keeps_the_active_generation_and_names_the_query(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, tmp_path: Path
) -> None:
    write(tmp_path, "postgres.md", "PostgreSQL stores the runs. Vacuum runs every night at two.")
    write(tmp_path, "rabbit.md", "RabbitMQ carries the messages between the clock and the workers.")
    write(tmp_path, "cron.md", "A cron expression has five fields: minute, hour, day, month and weekday.")
    golden = GoldenQuery("when does vacuum run", expected_sources=("postgres.md",))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))], golden=[golden], gate=Gate(), golden_k=1)
    embedder = Lexical()
    await define(pool, kb, embedder)
    first = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    assert first.verdict is not None and first.verdict.passed and first.activated
    (tmp_path / "postgres.md").unlink()

    with pytest.raises(PermanentError, match=r'generation 2 failed its gate.*"when does vacuum run".*generation 1'):
        await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert await states(pool) == [(1, GenerationState.ACTIVE), (2, GenerationState.FAILED)]
    async with pool.acquire() as conn:
        failed = (await store.list_generations(conn, "docs"))[1]
        assert failed.gate_results["regressed"] == ["when does vacuum run"]
        assert failed.gate_scores["candidate"]["hit_at_k"] == 0.0
        assert failed.gate_scores["active"]["hit_at_k"] == 1.0
        assert "gate failed" in (failed.error or "")
        # the states still describe the active generation: the next run sees the deletion again
        assert "postgres.md" in await store.get_source_states(conn, "docs")
        hits = await store.search_active(
            conn, "docs", (await embedder.embed(["vacuum"]))[0], 1, embedder_id=embedder.id
        )
    assert hits[0].source == "postgres.md"


async def test_an_embedder_answering_400_fails_with_its_message_and_leaves_the_active_generation(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake: FakeOpenAI, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", document(1))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))], embedder="openai")
    embedder = remote(http, fake)
    await define(pool, kb, embedder)
    await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    write(tmp_path, "a.md", document(2) + " Longer.")
    fake.enqueue(Error(400, "This model's maximum context length is 8192 tokens"))

    with pytest.raises(PermanentError, match="400 Bad Request: This model's maximum context length is 8192 tokens"):
        await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    # the generation is created at the first batch of vectors: none came, so none was created
    assert await states(pool) == [(1, GenerationState.ACTIVE)]
    async with pool.acquire() as conn:
        hits = await store.search_active(conn, "docs", fake.vector(document(1)), 1, embedder_id=embedder.id)
    assert hits[0].text == document(1)

    # and the next run, with the server answering again, picks the change up
    report = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    assert (report.fetched, report.generation, report.activated) == (1, 2, True)


async def test_a_failure_after_the_generation_exists_marks_it_failed(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        write(tmp_path, f"{i}.md", document(i))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))], embedder="openai")
    embedder = remote(http, fake)
    await define(pool, kb, embedder)
    await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    for i in range(3):
        write(tmp_path, f"{i}.md", f"Changed {i}. {document(i)}")
    # one document per batch: the first one's chunks are written before the second one's embedding fails
    monkeypatch.setattr(reindex_module, "FLUSH_CHUNKS", 1)
    fake.respond = lambda request: Error(400, "rate plan exceeded") if "Changed 1" in request.prompt else Answer()

    with pytest.raises(PermanentError, match="rate plan exceeded"):
        await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert await states(pool) == [(1, GenerationState.ACTIVE), (2, GenerationState.FAILED)]
    async with pool.acquire() as conn:
        failed = (await store.list_generations(conn, "docs"))[1]
    assert "rate plan exceeded" in (failed.error or "")


async def test_after_a_rollback_the_next_reindex_reads_every_document_again_from_the_cache(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake: FakeOpenAI, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", document(1))
    write(tmp_path, "b.md", document(2))
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))], embedder="openai")
    embedder = remote(http, fake)
    await define(pool, kb, embedder)
    await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    write(tmp_path, "a.md", document(1) + " Edited.")
    await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    async with pool.acquire() as conn:
        await store.rollback(conn, "docs")  # generation 1, with a.md as it was, answers again
    before = len(fake.requests)

    # the stored states describe generation 2: trusting them would carry generation 1's old a.md forever
    report = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert (report.fetched, report.unchanged, report.embedded, report.generation) == (2, 0, 0, 3)
    assert len(fake.requests) == before  # every chunk was in the embedding cache
    async with pool.acquire() as conn:
        hits = await store.search_active(
            conn, "docs", fake.vector(document(1) + " Edited."), 1, embedder_id=embedder.id
        )
    assert hits[0].text == document(1) + " Edited."


async def test_a_binary_file_and_an_empty_pdf_are_skipped_and_recorded(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, tmp_path: Path
) -> None:
    write(tmp_path, "guide.md", "The guide explains how to schedule a workflow.")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    pdf = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.write(pdf)
    (tmp_path / "scan.pdf").write_bytes(pdf.getvalue())
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))])
    embedder = Lexical()
    await define(pool, kb, embedder)

    report = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert report.activated and report.fetched == 3
    assert sorted(report.skipped) == ["logo.png", "scan.pdf"]
    assert "binary content" in report.skipped["logo.png"]
    assert report.skipped["scan.pdf"] == "no text layer (scanned?)"
    assert await chunk_sources(pool, 1) == ["guide.md"]
    async with pool.acquire() as conn:
        recorded = await store.get_source_states(conn, "docs")
    assert recorded["scan.pdf"].skipped == "no text layer (scanned?)"
    assert recorded["logo.png"].skipped is not None and recorded["guide.md"].skipped is None
    assert recorded["guide.md"].last_seen_at == NOW

    again = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)
    assert not again.changed and not again.skipped  # unchanged: not read, so not skipped again


async def test_the_lexical_embedder_end_to_end_with_a_chinese_query(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, tmp_path: Path
) -> None:
    write(tmp_path, "账户/重置密码.md", "忘记密码时，在登录页点击“忘记密码”，按邮件里的链接重置密码。")
    write(tmp_path, "发票.md", "发票在每月一号开具，可以在账单页面下载电子发票。")
    write(tmp_path, "schedule.md", "A schedule fires its workflow at each cron instant.")
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path))])
    embedder = Lexical()
    await define(pool, kb, embedder)

    report = await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)

    assert report.activated
    async with pool.acquire() as conn:
        query = (await embedder.embed(["怎么重置密码"]))[0]
        hits = await store.search_active(conn, "docs", query, 2, embedder_id=embedder.id)
    assert hits[0].source == "账户/重置密码.md"
    assert hits[0].metadata == {"source": "账户/重置密码.md"}


async def test_two_sources_holding_one_key_are_refused(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, tmp_path: Path
) -> None:
    write(tmp_path, "a.md", "One document.")
    kb = KnowledgeBase("docs", sources=[Folder(str(tmp_path), "*.md"), Folder(str(tmp_path), "a.*")])
    embedder = Lexical()
    await define(pool, kb, embedder)

    with pytest.raises(PermanentError, match=r'both hold "a\.md"'):
        await reindex(pool, "docs", http=http, embedder=embedder, now=NOW)


# --- the folder source -------------------------------------------------------------------------------------------


async def scan(source: FolderSource, known: dict[str, store.SourceState], http: httpx.AsyncClient) -> list[Any]:
    return [outcome async for outcome in source.scan(known, http)]


async def test_a_folder_reads_only_files_whose_mtime_or_size_changed(http: httpx.AsyncClient, tmp_path: Path) -> None:
    write(tmp_path, "a.md", "alpha")
    write(tmp_path, "sub/b.txt", "beta")
    write(tmp_path, ".git/config", "hidden")
    source = FolderSource(tmp_path)

    first = await scan(source, {}, http)

    assert [type(o) for o in first] == [Fetched, Fetched]
    assert [o.key for o in first] == ["a.md", "sub/b.txt"]
    known = {o.key: o.state for o in first}
    assert known["a.md"].size == 5 and known["a.md"].last_modified == str((tmp_path / "a.md").stat().st_mtime_ns)

    # same mtime and size: Unchanged, the previous state as it was
    assert [type(o) for o in await scan(source, known, http)] == [Unchanged, Unchanged]
    # touched, same content: read, and Unchanged with the new mtime
    os.utime(tmp_path / "a.md", ns=(1, 1))
    touched = (await scan(source, known, http))[0]
    assert isinstance(touched, Unchanged) and touched.state.last_modified == "1"
    # new content: Fetched
    write(tmp_path, "sub/b.txt", "gamma")
    assert isinstance((await scan(source, known, http))[1], Fetched)


async def test_a_missing_folder_raises_instead_of_deleting_everything(http: httpx.AsyncClient, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"folder source .*nowhere does not exist: create it, mount it"):
        await scan(FolderSource(tmp_path / "nowhere"), {}, http)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_an_unreadable_file_fails_alone(http: httpx.AsyncClient, tmp_path: Path) -> None:
    write(tmp_path, "a.md", "alpha")
    write(tmp_path, "b.md", "beta")
    (tmp_path / "b.md").chmod(0)

    outcomes = await scan(FolderSource(tmp_path), {}, http)

    assert isinstance(outcomes[0], Fetched)
    assert isinstance(outcomes[1], Failed) and not outcomes[1].transient


async def test_a_remote_embedder_batches_its_requests(http: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    config = LLMConfig.from_settings(Settings(embedding_base_url=fake.base_url, embedding_model="m"))
    embedder = make_embedder("openai", http, config, batch_size=4)
    assert isinstance(embedder, RemoteEmbedder)

    vectors = await embedder.embed([f"text {i}" for i in range(10)])

    assert [len(r.body["input"]) for r in fake.requests] == [4, 4, 2]
    assert vectors[7] == fake.vector("text 7")


async def test_a_remote_embedder_refuses_vectors_of_other_dimensions(http: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    embedder = remote(http, fake, dims=8)

    with pytest.raises(PermanentError, match="answered a vector of 16 dimensions, expected 8"):
        await embedder.embed(["text"])


def test_a_remote_embedder_without_settings_names_them(http: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigurationError, match="set PUNCHCLOCK_EMBEDDING_BASE_URL and PUNCHCLOCK_EMBEDDING_MODEL"):
        make_embedder("openai", http, LLMConfig.from_settings(Settings()))

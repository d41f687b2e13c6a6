"""The knowledge base store (app/kb/store.py, migration 0007) on the real embedded PostgreSQL with pgvector: one
partition and HNSW index per generation, search through it, carry forward, the embedding cache, source states,
and the switch of the active generation as readers see it."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import asyncpg
import pytest

from app.db.queries import sql
from app.errors import InvalidInput, NotFound
from app.kb import store
from app.kb.lifecycle import GenerationState
from app.kb.store import ChunkRow, GenerationCounts, SourceState

EMBEDDER = "test-embedder@1"


def chunk(source_key: str, seq: int, embedding: list[float], text: str | None = None) -> ChunkRow:
    text = text if text is not None else f"{source_key}#{seq}"
    return ChunkRow(
        source_key=source_key,
        seq=seq,
        chunk_id=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        embedding=embedding,
        metadata={"title": source_key},
    )


async def new_kb(conn: Any, name: str = "docs", dims: int = 3) -> None:
    await store.upsert_kb(conn, name, {"sources": [f"https://example.com/{name}"]}, embedder_id=EMBEDDER, dims=dims)


async def ready_generation(conn: Any, kb: str, chunks: list[ChunkRow], dims: int = 3) -> int:
    generation = await store.new_generation(conn, kb, embedder_id=EMBEDDER, dims=dims)
    await store.insert_chunks(conn, generation.id, chunks)
    await store.finish_generation(conn, generation.id, "ready", GenerationCounts(chunks=len(chunks)))
    return generation.id


async def partition_indexes(conn: Any, generation: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = to_regclass($1)",
        f"kb_chunks_{generation}",
    )
    return sorted(row["d"] for row in rows)


async def test_a_new_generation_gets_a_partition_of_its_own_indexed_once_filled(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn, dims=8)
        first = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=8)
        second = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=8)

        assert (first.number, second.number) == (1, 2)
        assert (first.state, first.kb, first.dims) == (GenerationState.BUILDING, "docs", 8)
        bound = await conn.fetchval(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'kb_chunks'::regclass AND c.relname = $1",
            f"kb_chunks_{first.id}",
        )
        assert bound == f"FOR VALUES IN ('{first.id}')"
        # no HNSW index while it is filled (inserting into one is 7 times slower), then one
        assert not any("hnsw" in d for d in await partition_indexes(conn, first.id))
        await store.index_generation(conn, first.id)
        await store.index_generation(conn, first.id)  # idempotent
        indexes = await partition_indexes(conn, first.id)
        assert any(
            "USING hnsw (((embedding)::vector(8)) vector_cosine_ops)" in d and f"kb_chunks_{first.id}_embedding" in d
            for d in indexes
        ), indexes
        # a chunk of other dimensions is refused before PostgreSQL sees it
        with pytest.raises(InvalidInput, match="has 3 dimensions, expected 8"):
            await store.insert_chunks(conn, first.id, [chunk("a", 0, [1, 0, 0])])
        with pytest.raises(NotFound, match='no knowledge base named "nope"'):
            await store.new_generation(conn, "nope", embedder_id=EMBEDDER, dims=8)


async def test_search_returns_the_nearest_chunks_first(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        generation = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)
        assert (
            await store.insert_chunks(
                conn,
                generation.id,
                [
                    chunk("x.md", 0, [1, 0, 0]),
                    chunk("xy.md", 0, [1, 1, 0]),
                    chunk("y.md", 0, [0, 1, 0]),
                    chunk("z.md", 0, [0, 0, 1]),
                ],
            )
            == 4
        )

        hits = await store.search(conn, generation.id, [1, 0.1, 0], 3)

        assert [h.source for h in hits] == ["x.md", "xy.md", "y.md"]
        assert hits[0].text == "x.md#0"
        assert hits[0].chunk_id == hashlib.sha256(b"x.md#0").hexdigest()
        assert hits[0].metadata == {"title": "x.md"}
        assert hits[0].generation == generation.id
        assert hits[0].score == pytest.approx(1 / (1.01**0.5), rel=1e-6)  # cosine similarity
        assert hits[0].score > hits[1].score > hits[2].score
        with pytest.raises(InvalidInput, match="embed the query with test-embedder@1"):
            await store.search(conn, generation.id, [1, 0, 0, 0], 3)
        with pytest.raises(InvalidInput, match="all zeros"):
            await store.search(conn, generation.id, [0, 0, 0], 3)


async def test_searches_use_the_hnsw_index_of_the_generations_partition(pool: asyncpg.Pool[Any]) -> None:
    rng = random.Random(9)
    async with pool.acquire() as conn:
        await new_kb(conn, dims=8)
        other = await ready_generation(
            conn, "docs", [chunk("o", i, [rng.random() for _ in range(8)]) for i in range(50)], 8
        )
        rows = [chunk(f"d{i % 20}", i, [rng.uniform(-1, 1) for _ in range(8)]) for i in range(2000)]
        generation = await ready_generation(conn, "docs", rows, 8)
        await store.activate(conn, "docs", generation)
        await conn.execute("ANALYZE kb_chunks")
        query = "[" + ",".join(str(rng.uniform(-1, 1)) for _ in range(8)) + "]"

        by_generation = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + sql("kb_search").format(dims=8), generation, query, 5
        )
        active = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + sql("kb_search_active").format(dims=8), "docs", query, EMBEDDER, 5
        )

        for plan in ("\n".join(r[0] for r in by_generation), "\n".join(r[0] for r in active)):
            # the generation's own index, scanned in distance order; the other generation's never touched
            assert f"Index Scan using kb_chunks_{generation}_embedding on kb_chunks_{generation}" in plan, plan
            assert "Order By: ((embedding)::vector(8) <=> " in plan, plan
            scanned = [line for line in plan.splitlines() if f"kb_chunks_{other}" in line]
            assert all("never executed" in line for line in scanned), plan
        # what the index returns is (nearly: HNSW is approximate, and its graph differs from build to build) the
        # exact nearest, nearest first
        vector = [float(x) for x in query.strip("[]").split(",")]
        hits = await store.search_active(conn, "docs", vector, 5, embedder_id=EMBEDDER)
        exact = await conn.fetch(
            "SELECT source_key, seq FROM kb_chunks WHERE generation = $1 ORDER BY embedding <=> $2::text::vector"
            " LIMIT 5",
            generation,
            query,
        )
        assert len({h.text for h in hits} & {f"{r['source_key']}#{r['seq']}" for r in exact}) >= 4
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_carry_forward_copies_exactly_the_named_documents_with_their_embeddings(
    pool: asyncpg.Pool[Any],
) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        old = await ready_generation(
            conn,
            "docs",
            [
                chunk("a.md", 0, [1, 0, 0]),
                chunk("a.md", 1, [1, 1, 0]),
                chunk("b.md", 0, [0, 1, 0]),
                chunk("c.md", 0, [0, 0, 1]),
            ],
        )
        new = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)

        assert await store.carry_forward(conn, old, new.id, ["a.md", "c.md", "gone.md"]) == 3

        copied = await conn.fetch(
            "SELECT source_key, seq, chunk_id, text, metadata, embedding::text AS e FROM kb_chunks"
            " WHERE generation = $1 ORDER BY source_key, seq",
            new.id,
        )
        originals = await conn.fetch(
            "SELECT source_key, seq, chunk_id, text, metadata, embedding::text AS e FROM kb_chunks"
            " WHERE generation = $1 AND source_key <> 'b.md' ORDER BY source_key, seq",
            old,
        )
        assert [tuple(r) for r in copied] == [tuple(r) for r in originals]
        assert [(r["source_key"], r["seq"]) for r in copied] == [("a.md", 0), ("a.md", 1), ("c.md", 0)]

        # only into a building generation of the same knowledge base and embedder
        with pytest.raises(InvalidInput, match="is ready: chunks are carried into only a building generation"):
            await store.carry_forward(conn, new.id, old, ["a.md"])
        other = await store.new_generation(conn, "docs", embedder_id="another-embedder", dims=3)
        with pytest.raises(InvalidInput, match="cannot be carried; embed the documents again"):
            await store.carry_forward(conn, old, other.id, ["a.md"])


async def test_the_embedding_cache_returns_only_the_hashes_stored_for_that_embedder(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await store.store_embeddings(conn, EMBEDDER, {"h1": [1, 0, 0], "h2": [0, 0.5, 0.25]})
        await store.store_embeddings(conn, "other", {"h3": [1, 1, 1]})
        # a hash already cached keeps its embedding
        await store.store_embeddings(conn, EMBEDDER, {"h1": [0, 0, 1]})

        found = await store.cached_embeddings(conn, EMBEDDER, ["h1", "h2", "h3", "h4", "h1"])

        assert found == {"h1": (1.0, 0.0, 0.0), "h2": (0.0, 0.5, 0.25)}
        assert await store.cached_embeddings(conn, EMBEDDER, []) == {}
        with pytest.raises(InvalidInput, match="the embedding of chunk bad holds nan at index 1"):
            await store.store_embeddings(conn, EMBEDDER, {"bad": [1, float("nan"), 0]})


async def test_activate_retires_the_previous_generation_and_rollback_goes_back(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        g1 = await ready_generation(conn, "docs", [chunk("a", 0, [1, 0, 0])])
        g2 = await ready_generation(conn, "docs", [chunk("a", 0, [0, 1, 0])])
        building = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)

        with pytest.raises(NotFound, match="no active generation yet"):
            await store.search_active(conn, "docs", [1, 0, 0], 1, embedder_id=EMBEDDER)
        assert (await store.activate(conn, "docs", g1)).state is GenerationState.ACTIVE
        activated = await store.activate(conn, "docs", g2)
        assert activated.state is GenerationState.ACTIVE and activated.activated_at is not None
        assert (await store.get_generation(conn, g1)).state is GenerationState.RETIRED
        assert (await store.get_kb(conn, "docs")).active_generation == g2
        # activating the active one again changes nothing
        assert (await store.activate(conn, "docs", g2)).state is GenerationState.ACTIVE
        with pytest.raises(InvalidInput, match='generation 3 of knowledge base "docs" is still building'):
            await store.activate(conn, "docs", building.id)

        back = await store.rollback(conn, "docs")

        assert (back.id, back.number) == (g1, 1)
        assert (await store.get_kb(conn, "docs")).active_generation == g1
        assert (await store.get_generation(conn, g2)).state is GenerationState.RETIRED
        with pytest.raises(InvalidInput, match="no retired generation older than its active generation 1"):
            await store.rollback(conn, "docs")
        assert (await store.rollback(conn, "docs", 2)).id == g2
        with pytest.raises(InvalidInput, match=r"generation 2 .* is already active"):
            await store.rollback(conn, "docs", 2)
        with pytest.raises(InvalidInput, match=r"has no generation 9 \(it has: 1, 2, 3\)"):
            await store.rollback(conn, "docs", 9)
        await store.finish_generation(conn, building.id, "failed", GenerationCounts(), error="gate: recall 0.2 < 0.8")
        with pytest.raises(InvalidInput, match=r"generation 3 .* failed its build or its gate"):
            await store.rollback(conn, "docs", 3)


async def test_dropping_old_generations_drops_their_partitions_and_keeps_their_rows(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        ids = [await ready_generation(conn, "docs", [chunk("a", 0, [1, 0, i])]) for i in range(4)]
        for generation in ids:
            await store.activate(conn, "docs", generation)
        await store.rollback(conn, "docs", 2)  # the active generation is kept, however old
        failed = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)
        await store.finish_generation(conn, failed.id, "failed", GenerationCounts(), error="boom")
        building = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)

        dropped = await store.drop_old_generations(conn, "docs", keep=2)

        # kept: 2 (active) and 4 (the newest other); dropped: 1, 3 and the failed 5; 6 is still building
        assert [(g.number, g.state) for g in dropped] == [
            (1, GenerationState.DROPPED),
            (3, GenerationState.DROPPED),
            (5, GenerationState.FAILED),
        ]
        for generation in (ids[0], ids[2], failed.id):
            assert await conn.fetchval("SELECT to_regclass($1)", f"kb_chunks_{generation}") is None
        for generation in (ids[1], ids[3], building.id):
            assert await conn.fetchval("SELECT to_regclass($1)", f"kb_chunks_{generation}") is not None
        states = {g.number: (g.state, g.dropped_at is not None) for g in await store.list_generations(conn, "docs")}
        assert states == {
            1: (GenerationState.DROPPED, True),
            2: (GenerationState.ACTIVE, False),
            3: (GenerationState.DROPPED, True),
            4: (GenerationState.RETIRED, False),
            5: (GenerationState.FAILED, True),
            6: (GenerationState.BUILDING, False),
        }
        assert await store.drop_old_generations(conn, "docs", keep=2) == []
        with pytest.raises(InvalidInput, match=r"generation 1 .* was dropped"):
            await store.rollback(conn, "docs", 1)
        with pytest.raises(InvalidInput, match="was dropped: search an active generation"):
            await store.search(conn, ids[0], [1, 0, 0], 1)
        with pytest.raises(InvalidInput, match="keep_generations must be at least 1"):
            await store.drop_old_generations(conn, "docs", keep=0)
        # the database refuses to drop the active one whoever asks
        with pytest.raises(asyncpg.ObjectInUseError, match="is active"):
            await conn.execute(sql("kb_drop_generation"), ids[1])


async def test_readers_see_the_active_generation_whole_until_the_switch_commits_and_only_the_new_one_after(
    pool: asyncpg.Pool[Any],
) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        old = await ready_generation(conn, "docs", [chunk("old", i, [1, i / 10, 0]) for i in range(5)])
        await store.activate(conn, "docs", old)
        # the next generation is built beside it, with chunks nearer the query than any of the old ones
        new = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=3)
        await store.insert_chunks(conn, new.id, [chunk("new", i, [1, 0, i / 100]) for i in range(5)])
        await store.finish_generation(conn, new.id, "ready", GenerationCounts(chunks=5))

    async def read() -> set[str]:
        hits = await store.search_active(pool, "docs", [1, 0, 0], 10, embedder_id=EMBEDDER)
        assert len(hits) == 5
        return {h.source for h in hits}

    assert await read() == {"old"}
    async with pool.acquire() as switcher, switcher.transaction():
        await store.activate(switcher, "docs", new.id)
        assert await read() == {"old"}  # not committed yet
    assert await read() == {"new"}


async def test_searches_across_many_switches_never_mix_generations(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        a = await ready_generation(conn, "docs", [chunk("a", i, [1, i / 10, 0]) for i in range(20)])
        b = await ready_generation(conn, "docs", [chunk("b", i, [1, 0, i / 10]) for i in range(20)])
        await store.activate(conn, "docs", a)
    seen: list[set[int]] = []
    switching = True

    async def reader() -> None:
        while switching:
            hits = await store.search_active(pool, "docs", [1, 0.05, 0.05], 20, embedder_id=EMBEDDER)
            assert len(hits) == 20
            seen.append({h.generation for h in hits})

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        async with pool.acquire() as conn:
            for _ in range(15):
                await store.activate(conn, "docs", b)
                await asyncio.sleep(0.005)
                await store.activate(conn, "docs", a)
                await asyncio.sleep(0.005)
    finally:
        switching = False
        await asyncio.gather(*readers)
    assert seen and all(len(generations) == 1 for generations in seen)
    assert set().union(*seen) == {a, b}


async def test_search_active_refuses_a_query_from_another_embedder(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn)
        await store.activate(conn, "docs", await ready_generation(conn, "docs", [chunk("a", 0, [1, 0, 0])]))

        with pytest.raises(InvalidInput, match=r"embedded by test-embedder@1 .*embed the query with test-embedder@1"):
            await store.search_active(conn, "docs", [1, 0, 0], 1, embedder_id="new-embedder")
        with pytest.raises(InvalidInput, match=r"\(3 dimensions\), the query by test-embedder@1 \(4\)"):
            await store.search_active(conn, "docs", [1, 0, 0, 0], 1, embedder_id=EMBEDDER)
        with pytest.raises(NotFound, match='no knowledge base named "nope"'):
            await store.search_active(conn, "nope", [1, 0, 0], 1, embedder_id=EMBEDDER)
        with pytest.raises(InvalidInput, match="k = 0"):
            await store.search_active(conn, "docs", [1, 0, 0], 0, embedder_id=EMBEDDER)


async def test_more_hits_than_hnsw_ef_search_returns(pool: asyncpg.Pool[Any]) -> None:
    rng = random.Random(3)
    async with pool.acquire() as conn:
        await new_kb(conn)
        generation = await ready_generation(
            conn, "docs", [chunk("d", i, [rng.uniform(0.1, 1) for _ in range(3)]) for i in range(120)]
        )
        hits = await store.search(conn, generation, [1, 1, 1], 100)
        assert len(hits) == 100
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_knowledge_bases_and_source_states_round_trip(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        created = await store.upsert_kb(conn, "docs", {"keep_generations": 3}, embedder_id=EMBEDDER, dims=3)
        updated = await store.upsert_kb(conn, "docs", {"keep_generations": 2}, embedder_id="e2", dims=4, source="code")
        await store.upsert_kb(conn, "alpha", {}, embedder_id=EMBEDDER, dims=3)

        assert updated.id == created.id
        assert (updated.definition, updated.embedder_id, updated.dims, updated.source) == (
            {"keep_generations": 2},
            "e2",
            4,
            "code",
        )
        assert [kb.name for kb in await store.list_kbs(conn)] == ["alpha", "docs"]
        with pytest.raises(InvalidInput, match="4000 dimensions"):
            await store.upsert_kb(conn, "big", {}, embedder_id=EMBEDDER, dims=4000)
        with pytest.raises(NotFound, match='no knowledge base named "nope"'):
            await store.get_kb(conn, "nope")

        seen = await conn.fetchval("SELECT now()")
        await store.put_source_states(
            conn,
            "docs",
            [
                SourceState(
                    "https://example.com/a",
                    etag='"abc"',
                    last_modified="Wed, 21 Oct 2026 07:28:00 GMT",
                    sha256="00ff",
                    size=12,
                    last_seen_at=seen,
                ),
                SourceState("docs/big.pdf", size=10**9, last_seen_at=seen, skipped="larger than max_bytes"),
            ],
        )
        await store.put_source_states(conn, "docs", [SourceState("docs/big.pdf", error="permission denied")])
        states = await store.get_source_states(conn, "docs")

        assert states["https://example.com/a"] == SourceState(
            "https://example.com/a", '"abc"', "Wed, 21 Oct 2026 07:28:00 GMT", "00ff", 12, seen, None, None
        )
        assert states["docs/big.pdf"] == SourceState("docs/big.pdf", error="permission denied")
        await store.delete_source_states(conn, "docs", ["docs/big.pdf"])
        assert list(await store.get_source_states(conn, "docs")) == ["https://example.com/a"]
        assert await store.get_source_states(conn, "alpha") == {}
        with pytest.raises(NotFound, match='no knowledge base named "nope"'):
            await store.put_source_states(conn, "nope", [SourceState("x")])


async def test_a_ready_generation_always_has_its_index_and_only_a_building_one_is_indexed(
    pool: asyncpg.Pool[Any],
) -> None:
    async with pool.acquire() as conn:
        await new_kb(conn, dims=8)
        generation = await store.new_generation(conn, "docs", embedder_id=EMBEDDER, dims=8)
        await store.finish_generation(conn, generation.id, "ready", store.GenerationCounts())
        assert any("hnsw" in d for d in await partition_indexes(conn, generation.id))
        with pytest.raises(InvalidInput, match="is ready: only a building generation is indexed"):
            await store.index_generation(conn, generation.id)

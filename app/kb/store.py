"""Knowledge bases in PostgreSQL: definitions, source states, generations, chunks with their embeddings (pgvector),
the embedding cache, search, and the atomic switch of the active generation.

Each generation's chunks live in a partition of ``kb_chunks`` of their own with their own HNSW index (migration
0007): a build writes its partition while readers search the active one; ``activate`` then moves one pointer in
one transaction. ``search_active`` reads the pointer and searches in one statement, so a reader sees one
generation, whole. Vectors travel as pgvector text (``app/kb/vectors.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from app.db.queries import sql
from app.errors import InvalidInput, NotFound
from app.jsonb import jsonb_problem
from app.kb import lifecycle
from app.kb.lifecycle import GenerationRef, GenerationState
from app.kb.vectors import Vector, check_dims, from_text, to_text

if TYPE_CHECKING:
    from app.db.pool import Connection, Executor

logger = logging.getLogger(__name__)

# Rows per INSERT of chunks or embeddings: large enough to amortise a round trip, small enough to keep one
# statement's arrays a few MB at 1,536 dimensions.
BATCH = 500
# pgvector's HNSW scan returns at most hnsw.ef_search rows (default 40, at most 1000).
DEFAULT_EF_SEARCH = 40
MAX_K = 1000


@dataclass(frozen=True)
class KnowledgeBase:
    id: int
    name: str
    definition: dict[str, Any]
    embedder_id: str
    dims: int
    source: str
    active_generation: int | None
    created_at: datetime
    updated_at: datetime
    orphaned: bool = False  # a code knowledge base no longer declared in schedules.py


@dataclass(frozen=True)
class GenerationCounts:
    documents: int = 0
    chunks: int = 0
    embedded: int = 0  # embedding cache misses: chunks this build paid to embed
    carried: int = 0  # chunks copied from the previous generation
    deleted: int = 0  # documents gone since the previous generation


@dataclass(frozen=True)
class Generation:
    id: int
    kb: str
    number: int
    state: GenerationState
    embedder_id: str
    dims: int
    counts: GenerationCounts
    gate_scores: Any
    gate_results: Any
    error: str | None
    run_id: int | None
    started_at: datetime
    finished_at: datetime | None
    activated_at: datetime | None
    dropped_at: datetime | None

    def ref(self) -> GenerationRef:
        return GenerationRef(self.id, self.kb, self.number, self.state, self.dropped_at is not None)


@dataclass(frozen=True)
class ChunkRow:
    """A chunk to store: ``chunk_id`` is the sha256 of ``text`` (the embedding cache key)."""

    source_key: str
    seq: int
    chunk_id: str
    text: str
    embedding: Sequence[float]
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    text: str
    source: str  # the source key of the chunk's document
    score: float  # cosine similarity: 1 - cosine distance
    chunk_id: str
    generation: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SourceState:
    """What a source looked like at the last reindex: its validators (as the server sent them) and content."""

    source_key: str
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    size: int | None = None
    last_seen_at: datetime | None = None
    skipped: str | None = None
    error: str | None = None


def _kb(row: asyncpg.Record) -> KnowledgeBase:
    return KnowledgeBase(**{f: row[f] for f in KnowledgeBase.__dataclass_fields__})


def _generation(row: asyncpg.Record) -> Generation:
    return Generation(
        id=row["id"],
        kb=row["kb"],
        number=row["number"],
        state=GenerationState(row["state"]),
        embedder_id=row["embedder_id"],
        dims=row["dims"],
        counts=GenerationCounts(**{f: row[f] for f in GenerationCounts.__dataclass_fields__}),
        gate_scores=row["gate_scores"],
        gate_results=row["gate_results"],
        error=row["error"],
        run_id=row["run_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        activated_at=row["activated_at"],
        dropped_at=row["dropped_at"],
    )


def _no_kb(name: str) -> NotFound:
    return NotFound(f'no knowledge base named "{name}": see punchclock kb list')


# --- knowledge bases ---------------------------------------------------------------------------------------------


async def upsert_kb(
    conn: Connection,
    name: str,
    definition: Mapping[str, Any],
    *,
    embedder_id: str,
    dims: int,
    source: Literal["code", "cli"] = "cli",
) -> KnowledgeBase:
    """Create or update knowledge base ``name``. A changed embedder applies from its next generation on."""
    if not name:
        raise InvalidInput("a knowledge base needs a name")
    if source not in ("code", "cli"):
        raise InvalidInput(f'knowledge base source "{source}": use "code" or "cli"')
    check_dims(dims, f'knowledge base "{name}"')
    problem = jsonb_problem(definition, "definition")
    if problem:
        raise InvalidInput(f'knowledge base "{name}": {problem}')
    row = await conn.fetchrow(sql("kb_upsert"), name, dict(definition), embedder_id, dims, source)
    assert row is not None
    return _kb(row)


async def get_kb(conn: Connection, name: str) -> KnowledgeBase:
    row = await conn.fetchrow(sql("kb_get"), name)
    if row is None:
        raise _no_kb(name)
    return _kb(row)


async def list_kbs(conn: Connection) -> list[KnowledgeBase]:
    return [_kb(row) for row in await conn.fetch(sql("kb_list"))]


# --- generations -------------------------------------------------------------------------------------------------


async def new_generation(
    conn: Connection, kb: str, *, embedder_id: str, dims: int, run_id: int | None = None
) -> Generation:
    """A new, empty generation of ``kb`` in state ``building``, with its partition and HNSW index."""
    check_dims(dims, f'a generation of knowledge base "{kb}"')
    async with conn.transaction():
        try:
            generation_id = await conn.fetchval(sql("kb_new_generation"), kb, embedder_id, dims, run_id)
        except asyncpg.NoDataFoundError:
            raise _no_kb(kb) from None
        return await get_generation(conn, generation_id)


async def get_generation(conn: Connection, generation: int) -> Generation:
    row = await conn.fetchrow(sql("kb_get_generation"), generation)
    if row is None:
        raise NotFound(f"no knowledge base generation with id {generation}")
    return _generation(row)


async def list_generations(conn: Connection, kb: str) -> list[Generation]:
    """``kb``'s generations, oldest first (an unknown name: an empty list)."""
    return [_generation(row) for row in await conn.fetch(sql("kb_list_generations"), kb)]


async def finish_generation(
    conn: Connection,
    generation: int,
    state: Literal["ready", "failed"],
    counts: GenerationCounts,
    *,
    gate_scores: Any = None,
    gate_results: Any = None,
    error: str | None = None,
) -> Generation:
    """Record the end of a build: ``ready`` (its gate passed: it may be activated) or ``failed``. A ready one
    gets its HNSW index first, if :func:`index_generation` has not built it yet: nothing unindexed is activated."""
    if state not in ("ready", "failed"):
        raise InvalidInput(f'a build ends "ready" or "failed", not "{state}"')
    if state == "ready":
        await index_generation(conn, generation)
    for value, what in ((gate_scores, "gate_scores"), (gate_results, "gate_results")):
        problem = jsonb_problem(value, what)
        if problem:
            raise InvalidInput(problem)
    row = await conn.fetchrow(
        sql("kb_finish_generation"), generation, state, asdict(counts), gate_scores, gate_results, error
    )
    if row is None:
        current = await get_generation(conn, generation)
        raise InvalidInput(f"{current.ref().label()} is {current.state}: only a building generation can finish")
    return _generation(row)


async def index_generation(conn: Connection, generation: int) -> None:
    """Build the HNSW index of a building generation once its chunks are in (idempotent). Indexing after the
    inserts is about 7 times faster than inserting into an indexed partition (migration 0007 says why)."""
    try:
        await conn.execute(sql("kb_index_generation"), generation)
    except asyncpg.ObjectNotInPrerequisiteStateError as error:
        raise InvalidInput(str(error)) from None


# --- the switch --------------------------------------------------------------------------------------------------


async def _switch(conn: Connection, kb: KnowledgeBase, generation: int) -> Generation:
    """Make ``generation`` the active one of ``kb``; run in a transaction holding ``kb``'s row lock."""
    row = await conn.fetchrow(sql("kb_lock_generation"), generation)
    if row is None or row["kb_id"] != kb.id:
        raise NotFound(f'knowledge base "{kb.name}" has no generation with id {generation}')
    target = _generation(row)
    problem = lifecycle.activation_problem(target.ref())
    if problem:
        raise InvalidInput(problem)
    if target.state is not GenerationState.ACTIVE:
        await conn.execute(sql("kb_retire_active"), kb.id)
        await conn.execute(sql("kb_activate"), kb.id, generation)
    return await get_generation(conn, generation)


async def activate(conn: Connection, kb: str, generation: int) -> Generation:
    """The atomic switch: in one transaction the active generation of ``kb`` (if any) becomes retired,
    ``generation`` (by id; ready or retired) active, and the pointer readers follow names it. Activating the
    active generation changes nothing."""
    async with conn.transaction():
        row = await conn.fetchrow(sql("kb_lock"), kb)
        if row is None:
            raise _no_kb(kb)
        return await _switch(conn, _kb(row), generation)


async def rollback(conn: Connection, kb: str, number: int | None = None) -> Generation:
    """``kb rollback KB [NUMBER]``: activate generation ``number`` (the per-knowledge-base number, not the id),
    or, without one, the newest retired generation older than the active one."""
    async with conn.transaction():
        row = await conn.fetchrow(sql("kb_lock"), kb)
        if row is None:
            raise _no_kb(kb)
        refs = [g.ref() for g in await list_generations(conn, kb)]
        target = lifecycle.rollback_target(kb, refs, number)
        return await _switch(conn, _kb(row), target.id)


async def drop_old_generations(conn: Connection, kb: str, keep: int) -> list[Generation]:
    """Drop the partitions of ``kb``'s generations beyond the newest ``keep`` (the active one counted, and kept
    even when older) and of its failed ones; their rows stay. Returns those dropped.

    Each drop is its own (sub)transaction. One that cannot lock ``kb_chunks`` within the lock timeout of
    ``punchclock_kb_drop_generation`` is left for the next call, as is one that became active meanwhile."""
    if await conn.fetchrow(sql("kb_get"), kb) is None:
        raise _no_kb(kb)
    doomed = lifecycle.generations_to_drop([g.ref() for g in await list_generations(conn, kb)], keep)
    dropped = []
    for ref in doomed:
        try:
            async with conn.transaction():
                await conn.execute(sql("kb_drop_generation"), ref.id)
        except (asyncpg.LockNotAvailableError, asyncpg.ObjectInUseError) as exc:
            logger.warning(
                "generation not dropped: left for the next reindex",
                extra={"action": "kb_drop_deferred", "kb": kb, "generation": ref.number, "reason": str(exc)},
            )
            continue
        dropped.append(await get_generation(conn, ref.id))
    return dropped


# --- chunks and embeddings ---------------------------------------------------------------------------------------


async def cached_embeddings(conn: Connection, embedder_id: str, hashes: Iterable[str]) -> dict[str, Vector]:
    """The embeddings of ``embedder_id`` already cached among chunk ``hashes``; the others are to embed."""
    rows = await conn.fetch(sql("kb_cached_embeddings"), embedder_id, list(set(hashes)))
    return {row["chunk_hash"]: from_text(row["embedding"]) for row in rows}


async def store_embeddings(conn: Connection, embedder_id: str, embeddings: Mapping[str, Sequence[float]]) -> None:
    """Cache ``embeddings`` (chunk hash → vector) of ``embedder_id``; hashes already cached keep theirs."""
    items = [(h, to_text(v, f"the embedding of chunk {h}")) for h, v in embeddings.items()]
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        await conn.execute(sql("kb_store_embeddings"), embedder_id, [h for h, _ in batch], [t for _, t in batch])


async def _building(conn: Connection, generation: int, action: str) -> Generation:
    """``generation``, share-locked for this transaction, refused unless it is building: the chunks of a
    generation readers may search never change."""
    row = await conn.fetchrow(sql("kb_share_generation"), generation)
    if row is None:
        raise NotFound(f"no knowledge base generation with id {generation}")
    target = _generation(row)
    if target.state is not GenerationState.BUILDING:
        raise InvalidInput(f"{target.ref().label()} is {target.state}: {action} only a building generation")
    return target


def _chunk_columns(chunks: Sequence[ChunkRow], dims: int) -> list[list[Any]]:
    """The chunks as one list per column of kb_insert_chunks.sql, each value checked."""
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for chunk in chunks:
        what = f"chunk {chunk.seq} of {chunk.source_key}"
        if "\x00" in chunk.text:
            raise InvalidInput(f"{what} holds a NUL character, which PostgreSQL text cannot store: remove it")
        problem = jsonb_problem(dict(chunk.metadata), "metadata")
        if problem:
            raise InvalidInput(f"{what}: {problem}")
        values = (
            chunk.source_key,
            chunk.seq,
            chunk.chunk_id,
            chunk.text,
            json.dumps(dict(chunk.metadata)),
            to_text(chunk.embedding, f"the embedding of {what}", dims),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def insert_chunks(conn: Connection, generation: int, chunks: Sequence[ChunkRow]) -> int:
    """Add ``chunks`` to a building generation, in batches, in one transaction; returns how many."""
    async with conn.transaction():
        target = await _building(conn, generation, "chunks are added to")
        for start in range(0, len(chunks), BATCH):
            columns = _chunk_columns(chunks[start : start + BATCH], target.dims)
            await conn.execute(sql("kb_insert_chunks"), generation, *columns)
    return len(chunks)


async def carry_forward(conn: Connection, from_generation: int, to_generation: int, source_keys: Iterable[str]) -> int:
    """Copy the chunks of the unchanged documents ``source_keys``, embeddings included, from one generation of a
    knowledge base to its building one, in one statement; returns how many chunks were copied."""
    async with conn.transaction():
        target = await _building(conn, to_generation, "chunks are carried into")
        # share-locked too: it cannot be dropped while its chunks are read
        row = await conn.fetchrow(sql("kb_share_generation"), from_generation)
        if row is None:
            raise NotFound(f"no knowledge base generation with id {from_generation}")
        source = _generation(row)
        if source.kb != target.kb:
            raise InvalidInput(f"cannot carry chunks from {source.ref().label()} into {target.ref().label()}")
        if source.dropped_at is not None:
            raise InvalidInput(f"{source.ref().label()} was dropped: its chunks are gone; embed the documents again")
        if (source.embedder_id, source.dims) != (target.embedder_id, target.dims):
            raise InvalidInput(
                f"{source.ref().label()} was embedded by {source.embedder_id} ({source.dims} dimensions) and"
                f" generation {target.number} by {target.embedder_id} ({target.dims}): its embeddings cannot be"
                " carried; embed the documents again (the cache keeps what this embedder already did)"
            )
        status = await conn.execute(sql("kb_carry_forward"), from_generation, to_generation, list(set(source_keys)))
    return int(status.split()[-1])


# --- search ------------------------------------------------------------------------------------------------------


def _k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k = {k}: a search returns 1 to {MAX_K} chunks")
    return k


async def _fetch_search(conn: Executor, query: str, k: int, *args: Any) -> list[asyncpg.Record]:
    if k <= DEFAULT_EF_SEARCH:
        return await conn.fetch(query, *args)
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as lent:
            return await _fetch_search(lent, query, k, *args)
    # An HNSW scan returns at most ef_search rows: raised for this transaction only.
    async with conn.transaction():
        await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(k))
        return await conn.fetch(query, *args)


def _hits(rows: Sequence[asyncpg.Record]) -> list[Hit]:
    return [
        Hit(
            text=row["text"],
            source=row["source_key"],
            score=1.0 - row["distance"],
            chunk_id=row["chunk_id"],
            generation=row["generation"],
            metadata=row["metadata"],
        )
        for row in rows
        if row["chunk_id"] is not None
    ]


async def search(conn: Executor, generation: int, query_vector: Sequence[float], k: int) -> list[Hit]:
    """The ``k`` chunks of ``generation`` nearest ``query_vector`` by cosine distance, nearest first (its
    partition's HNSW index: approximate). For a generation not active yet, e.g. the gate's golden queries."""
    text = to_text(query_vector, "the query vector")
    query = sql("kb_search").format(dims=len(query_vector))
    rows = await _fetch_search(conn, query, _k(k), generation, text, k)
    if not rows:
        raise NotFound(f"no knowledge base generation with id {generation}")
    first = rows[0]
    if first["dropped_at"] is not None:
        raise InvalidInput(f"knowledge base generation {generation} was dropped: search an active generation")
    if first["dims"] != len(query_vector):
        raise InvalidInput(
            f"the query vector has {len(query_vector)} dimensions and generation {generation}'s embeddings"
            f" {first['dims']}: embed the query with {first['embedder_id']}"
        )
    return _hits(rows)


async def search_active(
    conn: Executor, kb: str, query_vector: Sequence[float], k: int, *, embedder_id: str
) -> list[Hit]:
    """The ``k`` chunks of ``kb``'s active generation nearest ``query_vector`` (embedded by ``embedder_id``),
    nearest first. One statement resolves the active generation and searches it: a search running across a
    switch sees the old generation or the new one, never both."""
    text = to_text(query_vector, "the query vector")
    query = sql("kb_search_active").format(dims=len(query_vector))
    rows = await _fetch_search(conn, query, _k(k), kb, text, embedder_id, k)
    if not rows:
        if await conn.fetchrow(sql("kb_get"), kb) is None:
            raise _no_kb(kb)
        raise NotFound(f'knowledge base "{kb}" has no active generation yet: run its reindex')
    first = rows[0]
    if (first["embedder_id"], first["dims"]) != (embedder_id, len(query_vector)):
        raise InvalidInput(
            f'the active generation of knowledge base "{kb}" was embedded by {first["embedder_id"]}'
            f" ({first['dims']} dimensions), the query by {embedder_id} ({len(query_vector)}):"
            f" embed the query with {first['embedder_id']}"
        )
    return _hits(rows)


# --- source states -----------------------------------------------------------------------------------------------


async def get_source_states(conn: Connection, kb: str) -> dict[str, SourceState]:
    """What ``kb``'s sources looked like at the last reindex, by source key."""
    rows = await conn.fetch(sql("kb_get_sources"), kb)
    return {row["source_key"]: SourceState(**{f: row[f] for f in SourceState.__dataclass_fields__}) for row in rows}


async def put_source_states(conn: Connection, kb: str, states: Iterable[SourceState]) -> None:
    """Record (create or replace) the states of ``kb``'s sources, in one statement."""
    records = [{**asdict(s), "last_seen_at": s.last_seen_at.isoformat() if s.last_seen_at else None} for s in states]
    if await conn.fetchval(sql("kb_put_sources"), kb, records) is None:
        raise _no_kb(kb)


async def delete_source_states(conn: Connection, kb: str, source_keys: Iterable[str]) -> None:
    """Forget sources of ``kb`` (gone from its definition or from their server)."""
    await conn.execute(sql("kb_delete_sources"), kb, list(source_keys))

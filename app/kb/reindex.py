"""The reindex of one knowledge base: scan its sources, embed what changed, build a generation, gate, switch.

    report = await reindex(pool, "handbook", http=client, embedder=embedder, now=datetime.now(UTC))

The reindex actor and ``punchclock kb reindex`` both call :func:`reindex`. Its steps:

1. Scan every source with the states the last *activated* reindex stored; each document is Fetched, Unchanged
   or Failed (``app/kb/sources/base.py``). A key two sources both yield is refused (keys name documents).
2. Fetched documents are extracted (a binary file or a PDF without text is *skipped*, with its reason: the run
   goes on), chunked with the definition's chunking, metadata ``{"source": key}``. Documents are processed in
   batches of about ``FLUSH_CHUNKS`` chunks: the embedding cache answers what it can, the embedder only the
   misses, which are cached, and the batch is written to the new generation. So memory holds one batch's
   vectors, whatever the size of the knowledge base.
3. The chunks of Unchanged and Failed documents are carried from the active generation in one statement;
   documents gone from every source's listing are simply not carried.
4. With golden queries, the candidate and the active generation are scored (``app/kb/gate.py``) and the gate
   judges. Passed: the source states are stored and the generation activated in one transaction, then old
   generations dropped. Failed: the generation is marked failed with its scores and a PermanentError names the
   regressed queries; the active generation keeps answering.
5. With a Dify target, between the gate and the switch, the changed documents are pushed to the Dify dataset and,
   with its ``gate``, the golden queries judged through Dify's retrieve API too (``app/kb/dify_sync.py``).

Decisions:

- **Nothing changed, no generation.** A scan with nothing fetched and nothing gone (same embedder, an active
  generation) creates no generation: the report says ``changed=False``; a generation identical to the active one
  would only cost a copy of every chunk and push a useful one out of ``keep_generations``.
- **Source states follow the active generation.** They are written only with an activation (or by a run that
  changed nothing), never by a failed one: otherwise a document changed during a failed run would look
  Unchanged at the next, and its old chunks would be carried forever.
- **A new embedder re-reads everything.** Vectors of two embedders cannot share a generation, so when the
  active generation was embedded by another one, every source is scanned as if new and every chunk embedded
  (the cache is per embedder: going back to the previous embedder costs nothing). Failed documents then have no
  chunks to carry. So are a knowledge base with no active generation yet, ``full=True``, and the first reindex
  after a rollback (a newer generation was active once): the stored states describe that newer generation, and
  trusting them would carry the rolled-back generation's old chunks of documents that changed since. The cache
  makes such a rescan cost reads, not embeddings.
- A failed document keeps its previous validators only when it was scanned incrementally (they describe the
  chunks carried for it); in a rescan it keeps none, so the next reindex reads it again.
- A changed chunking applies to documents as they change; ``full=True`` re-chunks all (the cache keeps every
  chunk whose text did not change from being embedded again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import asyncpg
import httpx

from app.errors import InvalidInput
from app.kb import store
from app.kb.chunking import Chunk, ChunkingConfig
from app.kb.definition import KnowledgeBase
from app.kb.dify_sync import ClientFactory, DifyReport, DifySync, gate_results_with_dify
from app.kb.embedders import Embedder
from app.kb.formats import extract_text
from app.kb.gate import Evaluation, GoldenQuery, Retrieved, Verdict, evaluate
from app.kb.lifecycle import GenerationState
from app.kb.sources.base import Failed, Fetched, Unchanged
from app.kb.store import ChunkRow, Generation, GenerationCounts, SourceState
from app.transient import PermanentError

if TYPE_CHECKING:
    from app.db.pool import Connection

logger = logging.getLogger(__name__)

# Chunks per batch of documents: one batch's texts and vectors are all a reindex holds at once (512 vectors of
# 1,536 floats are ~6 MB as Python floats).
FLUSH_CHUNKS = 512
# Documents larger than this are extracted and chunked in a thread.
_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Progress:
    """Where a reindex is, for a progress bar: ``expected`` is how many documents the last reindex knew."""

    scanned: int
    embedded: int
    expected: int


@dataclass(frozen=True)
class ReindexReport:
    kb: str
    embedder_id: str
    scanned: int = 0
    fetched: int = 0  # new or changed documents read
    unchanged: int = 0
    failed: Mapping[str, str] = field(default_factory=dict)  # key → error; their previous chunks were carried
    skipped: Mapping[str, str] = field(default_factory=dict)  # key → why no text came out
    gone: Sequence[str] = ()
    chunks: int = 0  # chunks of fetched documents written to the new generation
    embedded: int = 0  # embedding cache misses: chunks this run paid to embed
    carried: int = 0
    generation: int | None = None  # the new generation's number; the active one's when nothing changed
    activated: bool = False
    changed: bool = True
    embedder_changed: bool = False  # the active generation was embedded by another embedder
    verdict: Verdict | None = None
    dropped: Sequence[int] = ()  # numbers of the generations dropped after the switch
    dify: DifyReport | None = None  # what was pushed to the Dify target, and its gate (app/kb/dify_sync.py)
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.changed:
            return f'knowledge base "{self.kb}": nothing changed ({self.scanned} documents scanned)'
        verdict = "" if self.verdict is None else (" gate passed;" if self.verdict.passed else " gate FAILED;")
        return (
            f'knowledge base "{self.kb}" generation {self.generation}: {self.scanned} documents scanned,'
            f" {self.fetched} fetched, {self.unchanged} unchanged, {len(self.failed)} failed,"
            f" {len(self.skipped)} skipped, {len(self.gone)} gone; {self.embedded} chunks embedded,"
            f" {self.carried} carried;{verdict} {'activated' if self.activated else 'not activated'}"
            + (f"; {self.dify.summary()}" if self.dify is not None else "")
        )


@dataclass
class _Tally:
    scanned: int = 0
    fetched: int = 0
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    embedded: int = 0
    cached: int = 0
    empty: int = 0  # chunks whose vector is all zeros (no letter or digit): nothing could ever find them


class _Build:
    """The new generation, created at its first batch of vectors (which tell a remote model's dimensions)."""

    def __init__(self, conn: Connection, kb: str, embedder: Embedder, run_id: int | None) -> None:
        self.conn = conn
        self.kb = kb
        self.embedder = embedder
        self.run_id = run_id
        self.generation: Generation | None = None
        self.dify: DifySync | None = None  # the Dify target's push, fed the fetched documents

    async def ensure(self, dims: int) -> Generation:
        if self.generation is None:
            self.generation = await store.new_generation(
                self.conn, self.kb, embedder_id=self.embedder.id, dims=dims, run_id=self.run_id
            )
        return self.generation

    async def flush(self, pending: list[tuple[str, list[Chunk]]], tally: _Tally) -> None:
        """Embed the batch's cache misses, cache them, and write the batch's chunks to the generation."""
        texts = {c.id: c.text for _, chunks in pending for c in chunks}
        if not texts:
            return
        vectors: dict[str, Sequence[float]] = dict(
            await store.cached_embeddings(self.conn, self.embedder.id, texts.keys())
        )
        misses = [chunk_id for chunk_id in texts if chunk_id not in vectors]
        if misses:
            fresh = await self.embedder.embed([texts[chunk_id] for chunk_id in misses])
            if len(fresh) != len(misses):
                raise PermanentError(
                    f"the embedder {self.embedder.id} answered {len(fresh)} vectors for {len(misses)} texts"
                )
            tally.embedded += len(misses)
            # A zero vector has no cosine distance: neither cached nor stored (see app/kb/vectors.py).
            new = {chunk_id: vector for chunk_id, vector in zip(misses, fresh, strict=True) if any(vector)}
            await store.store_embeddings(self.conn, self.embedder.id, new)
            vectors.update(new)
        tally.cached += len(texts) - len(misses)
        rows = [
            ChunkRow(key, c.seq, c.id, c.text, vectors[c.id], {"source": key})
            for key, chunks in pending
            for c in chunks
            if c.id in vectors
        ]
        tally.empty += sum(len(chunks) for _, chunks in pending) - len(rows)
        if rows:
            generation = await self.ensure(len(rows[0].embedding))
            tally.chunks += await store.insert_chunks(self.conn, generation.id, rows)


async def reindex(
    pool: asyncpg.Pool[Any],
    kb_name: str,
    *,
    http: httpx.AsyncClient,
    embedder: Embedder,
    now: datetime,
    progress: Callable[[Progress], None] | None = None,
    full: bool = False,
    run_id: int | None = None,
    dify: ClientFactory | None = None,
) -> ReindexReport:
    """Reindex knowledge base ``kb_name`` as the module docstring says; ``now`` stamps the sources' last_seen_at.
    Raises PermanentError when its gate fails or a source's listing fails (nothing changed then), and whatever
    the embedder raises (a 4xx: PermanentError with the server's message); the active generation stays."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        row = await store.get_kb(conn, kb_name)
        definition = KnowledgeBase.from_json(row.definition)
        states = await store.get_source_states(conn, kb_name)
        plan = plan_scan(await store.list_generations(conn, kb_name), embedder.id, full=full)
        if plan.embedder_changed:
            assert plan.active is not None
            logger.info(
                "the embedder changed: every document is read and embedded again",
                extra={
                    "action": "kb_embedder_changed",
                    "kb": kb_name,
                    "was": plan.active.embedder_id,
                    "now": embedder.id,
                },
            )
        if plan.rolled_back:
            assert plan.active is not None
            logger.info(
                "a newer generation was active before (a rollback): the sources are read again as if new",
                extra={"action": "kb_after_rollback", "kb": kb_name, "generation": plan.active.number},
            )
        build = _Build(conn, kb_name, embedder, run_id)
        build.dify = DifySync.start(definition, http, dify)
        try:
            return await _run(build, row, definition, plan, states, http, now, progress, started)
        except BaseException as error:
            if build.generation is not None:
                await _mark_failed(conn, build.generation, error)
            raise
        finally:
            if build.dify is not None:
                build.dify.close()


@dataclass(frozen=True)
class Plan:
    """How to scan, from the generations alone (pure)."""

    active: Generation | None
    embedder_changed: bool  # the active generation was embedded by another embedder: nothing can be carried
    rolled_back: bool  # a newer generation was active once: the stored source states describe it, not the active
    rescan: bool  # scan with no known states: every document is read as if new

    @property
    def can_carry(self) -> bool:
        return self.active is not None and not self.embedder_changed


def plan_scan(generations: Sequence[Generation], embedder_id: str, *, full: bool = False) -> Plan:
    active = next((g for g in generations if g.state is GenerationState.ACTIVE), None)
    embedder_changed = active is not None and active.embedder_id != embedder_id
    rolled_back = active is not None and any(
        g.number > active.number and g.activated_at is not None for g in generations
    )
    # The stored states describe the newest activated generation: trusted only when that is the active one.
    rescan = full or active is None or embedder_changed or rolled_back
    return Plan(active, embedder_changed, rolled_back, rescan)


@dataclass
class _Scanned:
    """What the scan found, beyond the tally: the states to store, and which documents to carry."""

    tally: _Tally
    states: dict[str, SourceState]
    keep: list[str]  # documents whose chunks are carried from the active generation
    gone: list[str]


def _prepare(key: str, data: bytes, chunking: ChunkingConfig) -> tuple[list[Chunk], str | None]:
    """A fetched document's chunks, or why it was skipped (pure)."""
    extracted = extract_text(key, data)
    if extracted.text is None:
        return [], extracted.skipped or "no text"
    return chunking.chunk(extracted.text, {"source": key}), None


async def _scan(
    build: _Build,
    definition: KnowledgeBase,
    plan: Plan,
    states: Mapping[str, SourceState],
    http: httpx.AsyncClient,
    now: datetime,
    progress: Callable[[Progress], None] | None,
) -> _Scanned:
    """Scan every source, writing fetched documents' chunks to the new generation batch by batch."""
    kb = build.kb
    known: Mapping[str, SourceState] = {} if plan.rescan else states
    tally = _Tally()
    found = _Scanned(tally, {}, [], [])
    seen: dict[str, str] = {}  # key → the source that yielded it
    pending: list[tuple[str, list[Chunk]]] = []
    pending_chunks = 0
    for source in definition.build_sources():
        async for outcome in source.scan(known, http):
            key = outcome.key
            if key in seen:
                raise PermanentError(
                    f'two sources of knowledge base "{kb}" both hold "{key}": {seen[key]} and'
                    f" {source.describe()}; give them globs or prefixes that do not overlap"
                )
            seen[key] = source.describe()
            tally.scanned += 1
            previous = states.get(key)
            if isinstance(outcome, Fetched):
                tally.fetched += 1
                if len(outcome.data) > _INLINE_BYTES:
                    # pypdf on a long PDF takes seconds: off the event loop, which serves heartbeats meanwhile
                    chunks, skipped = await asyncio.to_thread(_prepare, key, outcome.data, definition.chunking)
                else:
                    chunks, skipped = _prepare(key, outcome.data, definition.chunking)
                if skipped is not None:
                    tally.skipped[key] = skipped
                pending.append((key, chunks))
                if build.dify is not None:
                    build.dify.fetched(key, outcome.data)
                pending_chunks += len(chunks)
                found.states[key] = replace(outcome.state, last_seen_at=now, skipped=skipped, error=None)
                if pending_chunks >= FLUSH_CHUNKS:
                    await build.flush(pending, tally)
                    pending, pending_chunks = [], 0
            elif isinstance(outcome, Unchanged):
                tally.unchanged += 1
                found.keep.append(key)
                skipped = previous.skipped if previous is not None else None
                found.states[key] = replace(outcome.state, last_seen_at=now, skipped=skipped, error=None)
            elif isinstance(outcome, Failed):
                tally.failed[key] = outcome.error
                found.keep.append(key)
                # Scanned incrementally, its previous validators stay: they describe the chunks carried for it.
                # Scanned as new, they may not, so none are kept: the next reindex reads it again.
                base = previous if previous is not None and not plan.rescan else SourceState(key)
                found.states[key] = replace(base, error=outcome.error, last_seen_at=now)
            if progress is not None:
                progress(Progress(tally.scanned, tally.embedded, len(states)))
    await build.flush(pending, tally)
    if progress is not None:
        progress(Progress(tally.scanned, tally.embedded, len(states)))
    found.gone = sorted(key for key in states if key not in seen)
    logger.info(
        "knowledge base scanned",
        extra={
            "action": "kb_scan_done",
            "kb": kb,
            "scanned": tally.scanned,
            "fetched": tally.fetched,
            "unchanged": tally.unchanged,
            "failed": len(tally.failed),
            "skipped": len(tally.skipped),
            "gone": len(found.gone),
        },
    )
    logger.info(
        "chunks embedded",
        extra={
            "action": "kb_embedded",
            "kb": kb,
            "embedder": build.embedder.id,
            "embedded": tally.embedded,
            "cached": tally.cached,
            "chunks": tally.chunks,
            "empty": tally.empty,
        },
    )
    return found


async def _run(
    build: _Build,
    row: store.KnowledgeBase,
    definition: KnowledgeBase,
    plan: Plan,
    states: Mapping[str, SourceState],
    http: httpx.AsyncClient,
    now: datetime,
    progress: Callable[[Progress], None] | None,
    started: float,
) -> ReindexReport:
    conn = build.conn
    active = plan.active
    kb = row.name
    embedder = build.embedder
    found = await _scan(build, definition, plan, states, http, now, progress)
    tally, new_states, keep, gone = found.tally, found.states, found.keep, found.gone
    report = ReindexReport(
        kb=kb,
        embedder_id=embedder.id,
        scanned=tally.scanned,
        fetched=tally.fetched,
        unchanged=tally.unchanged,
        failed=dict(tally.failed),
        skipped=dict(tally.skipped),
        gone=tuple(gone),
        chunks=tally.chunks,
        embedded=tally.embedded,
        embedder_changed=plan.embedder_changed,
    )

    if active is not None and not plan.rescan and not tally.fetched and not gone:
        # Nothing to build; the states still record this run's errors and when each document was last seen.
        await store.put_source_states(conn, kb, new_states.values())
        logger.info(
            "nothing changed: no new generation",
            extra={"action": "kb_unchanged", "kb": kb, "generation": active.number, "failed": len(tally.failed)},
        )
        return replace(report, generation=active.number, changed=False, seconds=time.monotonic() - started)

    generation = await build.ensure(await _dims(embedder, row, active))
    carried = 0
    if active is not None and plan.can_carry and keep:
        carried = await store.carry_forward(conn, active.id, generation.id, keep)
    # Indexed once filled, and before the gate, so the golden queries search the index readers will.
    indexing = time.monotonic()
    await store.index_generation(conn, generation.id)
    logger.info(
        "generation indexed",
        extra={
            "action": "kb_indexed",
            "kb": kb,
            "generation": generation.number,
            "seconds": round(time.monotonic() - indexing, 3),
        },
    )
    counts = GenerationCounts(
        documents=tally.scanned - len(tally.skipped),
        chunks=tally.chunks + carried,
        embedded=tally.embedded,
        carried=carried,
        deleted=len(gone),
    )
    report = replace(report, carried=carried, generation=generation.number)
    logger.info(
        "generation built",
        extra={
            "action": "kb_generation_ready",
            "kb": kb,
            "generation": generation.number,
            "chunks": counts.chunks,
            "carried": carried,
            "embedded": tally.embedded,
        },
    )

    verdict: Verdict | None = None
    gate_scores: dict[str, Any] | None = None
    if definition.golden:
        candidate, was = await _evaluate(conn, definition, embedder, generation, active)
        verdict = definition.gate.judge(candidate, was)
        gate_scores = {"candidate": _means(candidate), "active": _means(was) if was is not None else None}
        report = replace(report, verdict=verdict)
        if not verdict.passed:
            reasons = "; ".join(verdict.reasons)
            await store.finish_generation(
                conn,
                generation.id,
                "failed",
                counts,
                gate_scores=gate_scores,
                gate_results=verdict.to_json(),
                error=f"gate failed: {reasons}",
            )
            logger.warning(
                "the gate refused the new generation: the active one stays",
                extra={
                    "action": "kb_gate_failed",
                    "kb": kb,
                    "generation": generation.number,
                    "regressed": list(verdict.regressed),
                    "reasons": list(verdict.reasons),
                },
            )
            still = f"generation {active.number} still answers" if active else "it has no active generation yet"
            raise PermanentError(
                f'knowledge base "{kb}": generation {generation.number} failed its gate ({reasons}); {still}.'
                " Fix the sources, or the golden queries if they are out of date, and reindex"
            )

    dify_report = None
    if build.dify is not None:  # after the local gate, before the switch: a failing Dify gate fails the run
        dify_report = await build.dify.push_and_gate(
            conn, kb, definition, seen=new_states.keys(), skipped=tally.skipped.keys(), active=active
        )
        report = replace(report, dify=dify_report)
    await store.finish_generation(
        conn,
        generation.id,
        "ready",
        counts,
        gate_scores=gate_scores,
        gate_results=gate_results_with_dify(verdict.to_json() if verdict is not None else None, dify_report),
    )
    async with conn.transaction():
        # With the switch, so the states always describe the active generation (see the module docstring).
        await store.put_source_states(conn, kb, new_states.values())
        await store.delete_source_states(conn, kb, gone)
        if (row.embedder_id, row.dims) != (embedder.id, generation.dims):
            origin = cast(Literal["code", "cli"], row.source)
            await store.upsert_kb(
                conn, kb, row.definition, embedder_id=embedder.id, dims=generation.dims, source=origin
            )
        await store.activate(conn, kb, generation.id)
    dropped = await store.drop_old_generations(conn, kb, definition.keep_generations)
    logger.info(
        "generation activated",
        extra={
            "action": "kb_activated",
            "kb": kb,
            "generation": generation.number,
            "previous": active.number if active else None,
            "dropped": [g.number for g in dropped],
        },
    )
    return replace(
        report,
        activated=True,
        dropped=tuple(g.number for g in dropped),
        seconds=time.monotonic() - started,
    )


async def _dims(embedder: Embedder, row: store.KnowledgeBase, active: Generation | None) -> int:
    """The new generation's dimensions when no chunk was embedded to tell them: declared, else what the same
    embedder gave before, else one probe."""
    if embedder.dims is not None:
        return embedder.dims
    if active is not None and active.embedder_id == embedder.id:
        return active.dims
    if row.embedder_id == embedder.id:
        return row.dims
    return len((await embedder.embed(["dimensions"]))[0])


async def score_golden(
    golden: Sequence[GoldenQuery],
    vectors: Sequence[Sequence[float]],
    k: int,
    search: Callable[[Sequence[float]], Awaitable[list[store.Hit]]],
) -> Evaluation:
    """The golden queries (``vectors``: their embeddings, in order) scored at ``k`` on what ``search`` finds."""
    results: dict[str, list[Retrieved]] = {}
    for query, vector in zip(golden, vectors, strict=True):
        results[query.query] = [Retrieved(hit.source, hit.text) for hit in await search(vector)]
    return evaluate(golden, results, k=k)


async def _evaluate(
    conn: Connection, definition: KnowledgeBase, embedder: Embedder, candidate: Generation, active: Generation | None
) -> tuple[Evaluation, Evaluation | None]:
    """The candidate's scores on the golden queries, and the active generation's: searched now when it was
    embedded by the same embedder (the golden queries may have changed since), else as stored when it passed."""
    golden = definition.golden
    k = definition.golden_k
    vectors = await embedder.embed([query.query for query in golden])

    async def scores(generation: Generation) -> Evaluation:
        return await score_golden(golden, vectors, k, lambda vector: store.search(conn, generation.id, vector, k))

    now = await scores(candidate)
    if active is None:
        return now, None
    if active.embedder_id == embedder.id:
        return now, await scores(active)
    stored = active.gate_results
    if isinstance(stored, Mapping) and "candidate" in stored:
        try:
            was = Evaluation.from_json(stored["candidate"])
        except (KeyError, TypeError, ValueError):
            return now, None
        return now, was if was.k == k else None
    return now, None


def _means(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "k": evaluation.k,
        "hit_at_k": evaluation.hit_at_k,
        "mrr": evaluation.mrr,
        "recall_at_k": evaluation.recall_at_k,
    }


async def _mark_failed(conn: Connection, generation: Generation, error: BaseException) -> None:
    """Record why a build stopped; a generation that already ended (its gate failed) is left as it is."""
    try:
        current = await store.get_generation(conn, generation.id)
        if current.state is GenerationState.BUILDING:
            await store.finish_generation(
                conn, generation.id, "failed", current.counts, error=str(error) or type(error).__name__
            )
    except (asyncpg.PostgresError, OSError, InvalidInput) as failure:
        # The connection may be what failed: the generation then stays building, and is dropped later.
        logger.warning(
            "could not mark the generation failed",
            extra={"action": "kb_generation_unmarked", "kb": generation.kb, "reason": str(failure)},
        )

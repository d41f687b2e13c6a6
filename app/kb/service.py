"""A knowledge base by name, as the reindex actor, ``ctx.kb(...)`` and ``punchclock kb`` use it: its stored
definition, the embedder it declares, a reindex, a search of its active generation.

    report = await reindex_kb(pool, "docs", http=client, llm_config=config)
    hits = await search_kb(pool, "docs", "how do I retry a run", k=5, http=client, llm_config=config)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from app.ai.config import LLMConfig
from app.errors import InvalidInput
from app.kb import registry, store
from app.kb.definition import KnowledgeBase
from app.kb.embedders import Embedder, make_embedder
from app.kb.gate import Evaluation
from app.kb.reindex import Progress, ReindexReport, reindex, score_golden

if TYPE_CHECKING:
    from app.db.pool import Connection, Pool


def embedder_for(kb: KnowledgeBase, http: httpx.AsyncClient, config: LLMConfig) -> Embedder:
    return make_embedder(kb.embedder, http, config, dims=kb.dims)


async def reindex_kb(
    pool: Pool,
    name: str,
    *,
    http: httpx.AsyncClient,
    llm_config: LLMConfig,
    run_id: int | None = None,
    full: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> ReindexReport:
    """Reindex ``name`` with the embedder its stored definition declares (NotFound when there is none)."""
    async with pool.acquire() as conn:
        kb = await registry.load(conn, name)
    embedder = embedder_for(kb, http, llm_config)
    return await reindex(
        pool, name, http=http, embedder=embedder, now=datetime.now(UTC), progress=progress, full=full, run_id=run_id
    )


async def search_kb(
    conn: Connection, name: str, query: str, *, k: int, http: httpx.AsyncClient, llm_config: LLMConfig
) -> list[store.Hit]:
    """The ``k`` chunks of ``name``'s active generation nearest ``query``, nearest first. The query is embedded by
    the embedder the definition declares: between a change of embedder and the next reindex, the active generation
    was embedded by another one, and store.search_active says so rather than compare unlike vectors."""
    kb = await registry.load(conn, name)
    embedder = embedder_for(kb, http, llm_config)
    vector = (await embedder.embed([query]))[0]
    return await store.search_active(conn, name, vector, k, embedder_id=embedder.id)


async def score_active(conn: Connection, name: str, *, http: httpx.AsyncClient, llm_config: LLMConfig) -> Evaluation:
    """The active generation of ``name`` scored now on its definition's golden queries at ``golden_k``: what the
    gate would say of it today (the golden queries may have changed since it passed)."""
    kb = await registry.load(conn, name)
    if not kb.golden:
        raise InvalidInput(f'knowledge base "{name}" has no golden queries: add some to its definition')
    embedder = embedder_for(kb, http, llm_config)
    vectors = await embedder.embed([query.query for query in kb.golden])
    return await score_golden(
        kb.golden,
        vectors,
        kb.golden_k,
        lambda vector: store.search_active(conn, name, vector, kb.golden_k, embedder_id=embedder.id),
    )


def searcher(
    pool: Pool, http: Callable[[], httpx.AsyncClient], llm_config: LLMConfig
) -> Callable[[str, str, int], Awaitable[list[store.Hit]]]:
    """``ctx.kb(...).search`` of the workflows: a search on a connection of ``pool`` (``http`` read late: the
    worker's client opens on first use)."""

    async def search(name: str, query: str, k: int) -> list[store.Hit]:
        async with pool.acquire() as conn:
            return await search_kb(conn, name, query, k=k, http=http(), llm_config=llm_config)

    return search


def hit_json(hit: store.Hit) -> dict[str, Any]:
    return {"text": hit.text, "source": hit.source, "score": hit.score, "chunk_id": hit.chunk_id}


def report_json(report: ReindexReport) -> dict[str, Any]:
    """The report as a run's output and ``kb reindex --json``: counts, the verdict and its scores."""
    data = asdict(report)
    data["failed"] = dict(report.failed)
    data["skipped"] = dict(report.skipped)
    data["gone"] = list(report.gone)
    data["dropped"] = list(report.dropped)
    verdict = report.verdict
    data["verdict"] = (
        None
        if verdict is None
        else {
            "passed": verdict.passed,
            "reasons": list(verdict.reasons),
            "regressed": list(verdict.regressed),
            "scores": {
                "k": verdict.candidate.k,
                "hit_at_k": verdict.candidate.hit_at_k,
                "mrr": verdict.candidate.mrr,
                "recall_at_k": verdict.candidate.recall_at_k,
            },
        }
    )
    data["summary"] = report.summary()
    return data

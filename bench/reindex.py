"""Knowledge-base reindex and search at scale: incremental vs full, search latency, memory (a script, not a test).

    python bench/reindex.py [--docs 10000] [--changed 0.01] [--search-chunks 100000] [--queries 500]
                            [--rss-chunks 100000] [--skip-rss] [--skip-remote] [--keep]
    python bench/reindex.py --docs 300 --search-chunks 4000 --queries 100 --rss-chunks 3000   # a quick check (30 s)

The defaults take about 20 minutes on 2 shared cores (memory 8.5, incremental vs full 7.5, search 4): run by
hand, not by ``make bench``.

Everything runs in this process against a fresh ``punchclock_reindex`` database (embedded in
``.punchclock/bench-pgdata`` unless ``PUNCHCLOCK_DATABASE_URL`` is set); the documents are written to a temporary
folder and read back through a ``Folder`` source, as a worker's reindex reads them.

1. memory (unless ``--skip-rss``): a folder of documents of ~10 chunks each, ``--rss-chunks`` chunks in all, one
   reindex with the lexical embedder (the default, CPU-bound) while a thread samples this process's RSS every
   0.2 s; baseline (before the reindex), peak, and the peak of each half of the run: a reindex that streams in
   batches reaches its plateau early and stays there. Run first, so nothing the other phases allocate counts.
2. incremental vs full: ``--docs`` documents (Chinese and English paragraphs, generated from a seed, 1 to 3 chunks
   each), per embedder: the lexical one wrapped in a counter (CPU-bound: the wall times that matter), and a
   remote one at a loopback OpenAI-compatible server (``tests/fakes/openai_server.py``, 384 dimensions, which
   counts what it is sent: the calls a paid provider would bill). In order: the first build (cache cold: every
   chunk embedded), ``--changed`` of the documents rewritten, the incremental reindex, then ``full=True`` on the
   same corpus (cache warm: every document re-read and re-chunked, nothing embedded). The embedding calls are
   checked against the chunk ids of the rewritten documents that no document had before, computed here with the
   knowledge base's own chunking. A breakdown of each run (embedding, chunk inserts, carry-forward, the rest:
   listing, reading, chunking, cache look-ups, the switch) comes from timing those store calls.
3. search: ``--search-chunks`` chunks of 384 synthetic dimensions (clustered, so that neighbours exist) inserted
   with ``store.insert_chunks`` into one generation, activated; ``--queries`` calls of ``store.search_active``
   (k = 10) on one connection after 20 unmeasured ones, p50 / p95; EXPLAIN ANALYZE of one says whether the
   partition's HNSW index answered.

Aims (the issue): incremental <= 15 % of a full rebuild's wall time, embedding calls = changed chunks exactly,
search p95 <= 50 ms at 100,000 chunks of 384 dimensions, RSS bounded during a 100,000-chunk reindex. Exit status
1 only when a check fails (calls not equal to the changed chunks, the index not used). Timings vary with the
machine's load (printed beside them); compare runs on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

PROJECT = str(Path(__file__).resolve().parent.parent)
if PROJECT not in sys.path:  # ``python bench/reindex.py`` puts bench/ first on sys.path, not the project
    sys.path.insert(0, PROJECT)

from app.ai.config import LLMConfig  # noqa: E402
from app.db.pool import create_pool  # noqa: E402
from app.db.queries import sql  # noqa: E402
from app.kb import store  # noqa: E402
from app.kb.chunking import ChunkingConfig  # noqa: E402
from app.kb.definition import Folder, KnowledgeBase  # noqa: E402
from app.kb.embedders import Embedder, Lexical, make_embedder  # noqa: E402
from app.kb.reindex import ReindexReport, reindex  # noqa: E402
from app.kb.store import ChunkRow  # noqa: E402
from app.kb.vectors import to_text  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench import harness  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

DATABASE = "punchclock_reindex"
DIMS = 384
K = 10
WARMUP_QUERIES = 20
CLUSTERS = 2_000
INSERT_BATCH = 2_000  # chunks per store.insert_chunks call (one transaction each) in the search phase
RSS_EVERY_S = 0.2
AIM_RATIO, AIM_P95_MS = 0.15, 50.0
MB = 1024 * 1024

# -- the documents ---------------------------------------------------------------------------------------------

_WORDS = [
    "schedule", "worker", "queue", "retry", "backoff", "cron", "index", "vector", "search", "chunk", "embedding",
    "generation", "switch", "gate", "golden", "query", "source", "folder", "bucket", "object", "header", "token",
    "model", "prompt", "answer", "latency", "budget", "timeout", "lock", "overlap", "misfire", "tick", "broker",
    "message", "payload", "report", "summary", "handbook", "policy", "invoice", "customer", "refund", "shipping",
    "warehouse", "contract", "meeting", "deadline", "release", "feature", "incident", "postmortem", "database",
    "table", "partition", "vacuum", "replica", "backup", "restore", "network", "certificate", "password", "account",
]  # fmt: skip
_HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 2500)]


def _english(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 7)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        sentences.append(" ".join(words).capitalize() + f" {rng.randint(1, 9999)}.")
    return " ".join(sentences)


def _chinese(rng: random.Random) -> str:
    return "".join("".join(rng.choices(_HAN, k=rng.randint(10, 30))) + "。" for _ in range(rng.randint(3, 8)))


def document(index: int, version: int, target_chars: int) -> str:
    """Document ``index`` at ``version``: Chinese and English paragraphs up to about ``target_chars``."""
    rng = random.Random(f"{index}:{version}")
    paragraphs: list[str] = []
    size = 0
    while size < target_chars:
        paragraph = _chinese(rng) if rng.random() < 0.5 else _english(rng)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return f"# Document {index}\n\n" + "\n\n".join(paragraphs) + "\n"


def doc_path(root: Path, index: int) -> Path:
    return root / f"d{index // 1000:03d}" / f"doc{index:06d}.md"


def write_corpus(root: Path, count: int, chars: Callable[[random.Random], int]) -> None:
    """``count`` documents under ``root``, one at a time (nothing kept in memory); their sizes from ``chars``."""
    sizes = random.Random(7)
    for index in range(count):
        path = doc_path(root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(index, 0, chars(sizes)), encoding="utf-8")


def chunk_ids(root: Path, indexes: Sequence[int], chunking: ChunkingConfig) -> set[str]:
    """The chunk ids the reindex gives documents ``indexes`` as they are on disk now (key: path under root)."""
    ids = set()
    for index in indexes:
        path = doc_path(root, index)
        key = path.relative_to(root).as_posix()
        ids.update(c.id for c in chunking.chunk(path.read_text(encoding="utf-8"), {"source": key}))
    return ids


# -- measuring -------------------------------------------------------------------------------------------------


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


class Counting:
    """An embedder that counts the calls and texts it passes on (for the lexical one, which has no server)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dims(self) -> int | None:
        return self.inner.dims

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        return await self.inner.embed(texts)


@dataclass
class Breakdown:
    """Seconds spent in the embedder and in the store calls a reindex makes, to tell where its time goes."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, what: str, seconds: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds

    def describe(self, total: float) -> str:
        parts = [f"{what} {s:.1f}" for what, s in sorted(self.seconds.items())]
        return ", ".join([*parts, f"rest {total - sum(self.seconds.values()):.1f} s"])


@contextmanager
def timed_store(breakdown: Breakdown) -> Iterator[None]:
    """Time ``store.insert_chunks``, ``carry_forward``, ``cached_embeddings`` and ``store_embeddings`` as the
    reindex calls them (through the module), putting the originals back on exit."""
    names = ("insert_chunks", "carry_forward", "cached_embeddings", "store_embeddings")
    originals = {name: getattr(store, name) for name in names}

    def wrap(name: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                breakdown.add(name.replace("_embeddings", " cache").replace("_", " "), time.perf_counter() - started)

        return timed

    for name, function in originals.items():
        setattr(store, name, wrap(name, function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(store, name, function)


class TimedEmbedder(Counting):
    def __init__(self, inner: Embedder, breakdown: Breakdown) -> None:
        super().__init__(inner)
        self.breakdown = breakdown

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return await super().embed(texts)
        finally:
            self.breakdown.add("embed", time.perf_counter() - started)


class RssSampler:
    """This process's RSS every ``every`` seconds, in a thread, with the time of each sample."""

    def __init__(self, every: float = RSS_EVERY_S) -> None:
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._process.memory_info().rss))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), self._process.memory_info().rss))


# -- results ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    what: str
    seconds: float
    report: ReindexReport
    breakdown: Breakdown
    load: str


@dataclass
class Incremental:
    embedder: str
    docs: int
    changed_docs: int
    expected: int  # chunk ids of the rewritten documents no document had before
    runs: dict[str, Run] = field(default_factory=dict)
    texts_embedded: int = 0  # by the incremental run, counted at the embedder or the server
    requests: int = 0


@dataclass
class Results(harness.Checks):
    rss: dict[str, Any] = field(default_factory=dict)
    incremental: list[Incremental] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)


# -- 1. memory -------------------------------------------------------------------------------------------------


async def kb_define(pool: Any, name: str, folder: Path, embedder: Embedder) -> None:
    kb = KnowledgeBase(name, sources=[Folder(str(folder), "**/*.md")])
    async with pool.acquire() as conn:
        await store.upsert_kb(conn, name, kb.to_json(), embedder_id=embedder.id, dims=embedder.dims or DIMS)


async def memory(pool: Any, http: httpx.AsyncClient, work: Path, chunks: int, results: Results) -> None:
    docs = max(1, chunks // 10)
    folder = work / "rss"
    print(f"\n== memory: a reindex of {docs:,} documents of ~10 chunks (~{chunks:,} chunks), lexical embedder")
    started = time.perf_counter()
    write_corpus(folder, docs, lambda rng: rng.randint(6_200, 7_000))
    print(f"  corpus written in {time.perf_counter() - started:.0f} s")
    embedder = Lexical(DIMS)
    await kb_define(pool, "bench-rss", folder, embedder)
    process = psutil.Process()
    baseline = process.memory_info().rss
    run_load = load()
    with RssSampler() as sampler:
        began = time.perf_counter()
        report = await reindex(pool, "bench-rss", http=http, embedder=embedder, now=datetime.now(UTC))
        seconds = time.perf_counter() - began
    middle = began + seconds / 2
    first = max(rss for at, rss in sampler.samples if at <= middle)
    second = max(rss for at, rss in sampler.samples if at > middle)
    peak = max(rss for _, rss in sampler.samples)
    results.rss = {
        "chunks": report.chunks,
        "docs": docs,
        "seconds": seconds,
        "baseline": baseline,
        "peak": peak,
        "first": first,
        "second": second,
        "end": sampler.samples[-1][1],
        "samples": len(sampler.samples),
        "load": run_load,
    }
    print(
        f"  {report.chunks:,} chunks in {seconds:.0f} s ({report.chunks / seconds:,.0f}/s, {run_load} -> {load()});"
        f" RSS baseline {baseline / MB:.0f} MB, peak {peak / MB:.0f} MB (first half {first / MB:.0f},"
        f" second half {second / MB:.0f}), end {sampler.samples[-1][1] / MB:.0f} MB; {len(sampler.samples)} samples"
    )
    results.check(
        report.activated and report.embedded == report.chunks,
        f"the memory phase's reindex embedded every chunk ({report.embedded:,})",
    )


# -- 2. incremental vs full --------------------------------------------------------------------------------------


async def incremental(
    pool: Any,
    http: httpx.AsyncClient,
    folder: Path,
    args: argparse.Namespace,
    label: str,
    make: Callable[[Breakdown], TimedEmbedder],
    sent: Callable[[], tuple[int, int]],
    results: Results,
) -> None:
    """Cold build, 1 % rewritten, incremental, then full on the same corpus; ``sent`` counts (requests, texts)
    the embedder passed on so far."""
    name = f"bench-{label.split()[0]}"
    changed = sorted(random.Random(11).sample(range(args.docs), max(1, round(args.docs * args.changed))))
    chunking = ChunkingConfig()
    first_embedder = make(Breakdown())
    await kb_define(pool, name, folder, first_embedder)
    outcome = Incremental(label, args.docs, len(changed), expected=0)
    results.incremental.append(outcome)
    print(f"\n== incremental vs full, {label}: {args.docs:,} documents, {len(changed)} rewritten")

    async def one(what: str, **kwargs: Any) -> Run:
        breakdown = Breakdown()
        embedder = make(breakdown)
        run_load = load()
        with timed_store(breakdown):
            started = time.perf_counter()
            report = await reindex(pool, name, http=http, embedder=embedder, now=datetime.now(UTC), **kwargs)
            seconds = time.perf_counter() - started
        run = Run(what, seconds, report, breakdown, run_load)
        outcome.runs[what] = run
        print(
            f"  {what:<12} {seconds:7.1f} s  ({run_load})  {report.fetched:,} read, {report.chunks:,} chunks"
            f" written, {report.embedded:,} embedded, {report.carried:,} carried; {breakdown.describe(seconds)}"
        )
        return run

    await one("first build")
    before = chunk_ids(folder, range(args.docs), chunking)
    for index in changed:
        doc_path(folder, index).write_text(document(index, 1, random.Random(index).randint(400, 2_200)), "utf-8")
    outcome.expected = len(chunk_ids(folder, changed, chunking) - before)
    requests, texts = sent()
    run = await one("incremental")
    requests_after, texts_after = sent()
    outcome.requests, outcome.texts_embedded = requests_after - requests, texts_after - texts
    await one("full (warm)", full=True)
    first, full = outcome.runs["first build"].seconds, outcome.runs["full (warm)"].seconds
    print(
        f"  incremental / first build {run.seconds / first:.1%}, / full (warm) {run.seconds / full:.1%};"
        f" embedded {outcome.texts_embedded:,} texts in {outcome.requests} calls, changed chunks {outcome.expected:,}"
    )
    results.check(
        outcome.texts_embedded == outcome.expected == run.report.embedded,
        f"{label}: texts embedded by the incremental reindex ({outcome.texts_embedded:,}) = new chunks of the"
        f" rewritten documents ({outcome.expected:,}) = its report's ({run.report.embedded:,})",
    )
    results.check(
        run.report.fetched == len(changed) and run.report.unchanged == args.docs - len(changed),
        f"{label}: the incremental run read exactly the rewritten documents ({run.report.fetched})",
    )


def docs_corpus(folder: Path, count: int) -> Path:
    started = time.perf_counter()
    write_corpus(folder, count, lambda rng: rng.randint(400, 2_200))
    print(f"\n{count:,} documents written to {folder} in {time.perf_counter() - started:.0f} s")
    return folder


async def incremental_both(
    pool: Any, http: httpx.AsyncClient, work: Path, args: argparse.Namespace, r: Results
) -> None:
    folder = docs_corpus(work / "lexical", args.docs)

    counters: list[TimedEmbedder] = []

    def lexical(breakdown: Breakdown) -> TimedEmbedder:
        counters.append(TimedEmbedder(Lexical(DIMS), breakdown))
        return counters[-1]

    def counted() -> tuple[int, int]:
        return sum(c.calls for c in counters), sum(c.texts for c in counters)

    await incremental(pool, http, folder, args, "lexical (counted at the embedder)", lexical, counted, r)
    if args.skip_remote:
        return
    folder = docs_corpus(work / "remote", args.docs)  # the same documents, as the lexical runs found them
    with FakeOpenAI(dimensions=DIMS) as fake:
        config = LLMConfig.from_settings(Settings(embedding_base_url=fake.base_url, embedding_model="fake-embed"))

        def remote(breakdown: Breakdown) -> TimedEmbedder:
            return TimedEmbedder(make_embedder("openai", http, config), breakdown)

        def served() -> tuple[int, int]:
            asked = [request for request in fake.requests if request.path.endswith("/embeddings")]
            return len(asked), sum(len(request.body["input"]) for request in asked)

        await incremental(pool, http, folder, args, "remote (counted at a loopback server)", remote, served, r)


# -- 3. search -------------------------------------------------------------------------------------------------


def synthetic_vectors(count: int, rng: random.Random, centers: list[list[float]]) -> Iterator[list[float]]:
    for _ in range(count):
        center = rng.choice(centers)
        yield [x + rng.uniform(-0.5, 0.5) for x in center]


async def search(pool: Any, count: int, queries: int, results: Results) -> None:
    print(f"\n== search: {count:,} chunks of {DIMS} dimensions via store.insert_chunks, {queries} queries (k={K})")
    rng = random.Random(5)
    centers = [[rng.uniform(-1, 1) for _ in range(DIMS)] for _ in range(CLUSTERS)]
    embedder_id = "synthetic-384"
    async with pool.acquire() as conn:
        await store.upsert_kb(conn, "bench-search", {"name": "bench-search"}, embedder_id=embedder_id, dims=DIMS)
        generation = await store.new_generation(conn, "bench-search", embedder_id=embedder_id, dims=DIMS)
        insert_load = load()
        started = time.perf_counter()
        vectors = synthetic_vectors(count, rng, centers)
        for start in range(0, count, INSERT_BATCH):
            rows = [
                ChunkRow(f"doc{i // 4:06d}.md", i % 4, f"{i:064x}", f"chunk {i}", next(vectors), {"source": str(i)})
                for i in range(start, min(count, start + INSERT_BATCH))
            ]
            await store.insert_chunks(conn, generation.id, rows)
            if (start // INSERT_BATCH) % 10 == 9:
                rate = (start + len(rows)) / (time.perf_counter() - started)
                print(f"  {start + len(rows):,} inserted ({rate:,.0f}/s, {load()})", flush=True)
        insert_s = time.perf_counter() - started
        await store.finish_generation(conn, generation.id, "ready", store.GenerationCounts(chunks=count))
        await store.activate(conn, "bench-search", generation.id)
        await conn.execute("ANALYZE kb_chunks")
        sizes = await harness.relation_bytes(conn, [f"kb_chunks_{generation.id}"])
        asked = [[x + rng.uniform(-0.5, 0.5) for x in rng.choice(centers)] for _ in range(queries + WARMUP_QUERIES)]
        search_load = load()
        timings = []
        for i, vector in enumerate(asked):
            began = time.perf_counter()
            hits = await store.search_active(conn, "bench-search", vector, K, embedder_id=embedder_id)
            if i >= WARMUP_QUERIES:
                timings.append((time.perf_counter() - began) * 1000)
            if len(hits) != K:
                results.failures.append(f"search {i} returned {len(hits)} hits")
        query = sql("kb_search_active").format(dims=DIMS)
        plan_rows = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + query, "bench-search", to_text(asked[0], "the query"), embedder_id, K
        )
    plan = "\n".join(row[0] for row in plan_rows)
    index = f"kb_chunks_{generation.id}_embedding"
    used = f"Index Scan using {index}" in plan
    p50, p95 = harness.p50_p95(timings)
    heap, indexes = sizes[f"kb_chunks_{generation.id}"]
    results.search = {
        "chunks": count,
        "insert_s": insert_s,
        "insert_load": insert_load,
        "p50": p50,
        "p95": p95,
        "max": max(timings),
        "queries": len(timings),
        "load": search_load,
        "index_used": used,
        "heap": heap,
        "index_bytes": indexes,
    }
    print(f"  inserted in {insert_s:.0f} s ({count / insert_s:,.0f} chunks/s, {insert_load});")
    print(f"  partition {heap / MB:.0f} MB, its indexes {indexes / MB:.0f} MB")
    print(f"  search_active p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(timings):.1f} ms ({search_load})")
    # the nodes executed (the partitions of other generations are pruned at run time: "never executed")
    shown = [line for line in plan.splitlines() if "actual time" in line or line.startswith(("Planning T", "Exec"))]
    print("  EXPLAIN ANALYZE of one search, the nodes executed:\n    " + "\n    ".join(shown))
    results.check(used, f"the search used the partition's HNSW index {index}")


# -- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents of the incremental phase")
    parser.add_argument("--changed", type=float, default=0.01, help="share of them rewritten")
    parser.add_argument("--search-chunks", type=int, default=100_000, help="chunks searched (0: no search phase)")
    parser.add_argument("--queries", type=int, default=500, help="searches timed")
    parser.add_argument("--rss-chunks", type=int, default=100_000, help="chunks of the memory phase's reindex")
    parser.add_argument("--skip-rss", action="store_true", help="no memory phase")
    parser.add_argument("--skip-remote", action="store_true", help="lexical embedder only")
    parser.add_argument("--keep", action="store_true", help=f"leave the {DATABASE} database behind")
    args = parser.parse_args()
    logging.getLogger("app").setLevel(logging.WARNING)
    results = asyncio.run(run(args, Settings.from_env()))
    raise SystemExit(1 if results.failures else 0)


async def run(args: argparse.Namespace, settings: Settings) -> Results:
    admin_url = harness.admin_database_url(settings.database_url)
    url = harness.with_path(admin_url, DATABASE)
    print(f"database {DATABASE} on {harness.redact(admin_url)}; {load()}, {os.cpu_count()} cores")
    await harness.recreate_database(admin_url, DATABASE)
    pool = await create_pool(url, 4)
    work = Path(tempfile.mkdtemp(prefix="punchclock-reindex-"))
    results = Results()
    began = time.perf_counter()
    try:
        async with httpx.AsyncClient() as http:
            if not args.skip_rss:
                await memory(pool, http, work, args.rss_chunks, results)
            if args.docs:
                await incremental_both(pool, http, work, args, results)
        if args.search_chunks:
            await search(pool, args.search_chunks, args.queries, results)
    finally:
        await pool.close()
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            await harness.drop_database(admin_url, DATABASE)
    summary(results, time.perf_counter() - began)
    return results


def summary(r: Results, seconds: float) -> None:
    rows: list[tuple[str, str, str]] = []
    if r.rss:
        m = r.rss
        rows.append(
            (
                f"RSS during a {m['chunks']:,}-chunk reindex: baseline / peak",
                f"{m['baseline'] / MB:,.0f} / {m['peak'] / MB:,.0f} MB",
                f"peak of 1st half {m['first'] / MB:,.0f}, 2nd half {m['second'] / MB:,.0f} MB; {m['seconds']:.0f} s,"
                f" {m['load']}",
            )
        )
    for outcome in r.incremental:
        first, inc, full = (outcome.runs[w] for w in ("first build", "incremental", "full (warm)"))
        ratio_cold, ratio_warm = inc.seconds / first.seconds, inc.seconds / full.seconds
        rows.append(
            (
                f"{outcome.embedder}: incremental / first build",
                f"{inc.seconds:.1f} / {first.seconds:.1f} s",
                harness.verdict(ratio_cold <= AIM_RATIO, f"<= {AIM_RATIO:.0%}") + f": {ratio_cold:.1%}; {inc.load}",
            )
        )
        rows.append(
            (
                f"{outcome.embedder}: incremental / full (warm cache)",
                f"{inc.seconds:.1f} / {full.seconds:.1f} s",
                harness.verdict(ratio_warm <= AIM_RATIO, f"<= {AIM_RATIO:.0%}") + f": {ratio_warm:.1%}; {full.load}",
            )
        )
        rows.append(
            (
                f"{outcome.embedder}: texts embedded / changed chunks",
                f"{outcome.texts_embedded:,} / {outcome.expected:,}",
                ("exact" if outcome.texts_embedded == outcome.expected else "NOT equal")
                + f"; {outcome.requests} calls, {outcome.changed_docs} of {outcome.docs:,} documents rewritten",
            )
        )
    if r.search:
        s = r.search
        rows.append(
            (
                f"search_active at {s['chunks']:,} chunks ({DIMS} dims): p50 / p95",
                f"{s['p50']:.1f} / {s['p95']:.1f} ms",
                harness.verdict(s["p95"] <= AIM_P95_MS, f"p95 <= {AIM_P95_MS:.0f} ms")
                + f"; HNSW index {'used' if s['index_used'] else 'NOT used'}; {s['queries']} queries, {s['load']}",
            )
        )
        rows.append(
            (
                f"insert_chunks of {s['chunks']:,} into one generation",
                f"{s['insert_s']:,.0f} s",
                f"{s['chunks'] / s['insert_s']:,.0f} chunks/s into the HNSW index; {s['insert_load']}",
            )
        )
    rows.append(("the whole bench", f"{seconds / 60:.1f} min", load()))
    harness.print_summary(rows)
    if r.failures:
        print("checks failed: " + "; ".join(r.failures))


if __name__ == "__main__":
    main()

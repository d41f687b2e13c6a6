"""``punchclock kb …``: list, show, reindex, search, golden, generations, rollback, add.

Knowledge bases come from ``KNOWLEDGE_BASES`` in schedules.py (synced when a worker boots, ``source`` = ``code``)
or from ``kb add FILE`` (a definition's JSON, ``source`` = ``cli``). ``kb reindex`` runs the same pipeline as the
``reindex`` actor, in the foreground, with a progress line on stderr; it is no run, and takes no run lease: two
reindexes of one knowledge base at once both build, and the second to finish switches last (each switch is
atomic).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from app.ai.config import LLMConfig
from app.cli import output
from app.cli.arguments import json_flag
from app.cli.database import Database, run_with_database
from app.db.pool import create_pool
from app.db.queries import sql
from app.errors import InvalidInput, NotFound
from app.kb import registry, store
from app.kb.definition import KnowledgeBase
from app.kb.gate import Evaluation
from app.kb.reindex import Progress, ReindexReport
from app.kb.service import hit_json, reindex_kb, report_json, score_active, search_kb
from app.notify.targets import parse_target
from app.settings import Settings

if TYPE_CHECKING:
    from app.db.pool import Connection

DEFAULT_K = 5
# On a terminal the progress line is redrawn at most this often; elsewhere (a log file, CI) a line is printed
# this often, and once at the end.
_TTY_EVERY = 0.2
_PIPE_EVERY = 5.0


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="kb_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="every knowledge base: embedder, active generation, chunks")
    json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = commands.add_parser("show", help="a knowledge base: sources, active generation, gate scores, last run")
    show.add_argument("name", metavar="NAME")
    json_flag(show)
    show.set_defaults(handler=show_command)

    reindex = commands.add_parser("reindex", help="reindex now, in the foreground (progress on stderr)")
    reindex.add_argument("name", metavar="NAME")
    reindex.add_argument("--full", action="store_true", help="read and re-chunk every document")
    json_flag(reindex)
    reindex.set_defaults(handler=reindex_command)

    search = commands.add_parser("search", help="the chunks of the active generation nearest a query")
    search.add_argument("name", metavar="NAME")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-k", type=int, default=DEFAULT_K, help=f"how many chunks (default {DEFAULT_K})")
    json_flag(search)
    search.set_defaults(handler=search_command)

    golden = commands.add_parser("golden", help="score the active generation on the golden queries now")
    golden.add_argument("name", metavar="NAME")
    json_flag(golden)
    golden.set_defaults(handler=golden_command)

    generations = commands.add_parser("generations", help="every generation of a knowledge base, oldest first")
    generations.add_argument("name", metavar="NAME")
    json_flag(generations)
    generations.set_defaults(handler=generations_command)

    rollback = commands.add_parser("rollback", help="activate an older generation (default: the previous one)")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("number", metavar="NUMBER", type=int, nargs="?", help="the generation's number")
    rollback.set_defaults(handler=rollback_command)

    add = commands.add_parser("add", help="create or update a knowledge base from a JSON definition file")
    add.add_argument("file", metavar="FILE", help='a JSON object: {"name": …, "sources": [{"kind": "folder", …}]}')
    add.set_defaults(handler=add_command)


async def _kb(conn: Connection, name: str) -> store.KnowledgeBase:
    """The row of ``name``; NotFound (exit 2) naming it and the knowledge bases there are."""
    try:
        return await store.get_kb(conn, name)
    except NotFound:
        known = ", ".join(kb.name for kb in await store.list_kbs(conn)) or "none yet"
        raise NotFound(f'no knowledge base named "{name}": known ones are {known}') from None


def _active(generations: list[store.Generation], row: store.KnowledgeBase) -> store.Generation | None:
    return next((g for g in generations if g.id == row.active_generation), None)


def _status(row: store.KnowledgeBase) -> str:
    return "orphaned" if row.orphaned else "active"


# --- list, show, generations ---------------------------------------------------------------------------------


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> list[tuple[store.KnowledgeBase, store.Generation | None]]:
        rows = await store.list_kbs(db.conn)
        return [(row, _active(await store.list_generations(db.conn, row.name), row)) for row in rows]

    kbs = run_with_database(settings, fetch)
    if args.json:
        output.print_json([_kb_json(row, active) for row, active in kbs])
        return 0
    if not kbs:
        print("no knowledge bases: declare KNOWLEDGE_BASES in schedules.py, or punchclock kb add FILE")
        return 0
    output.print_table(
        (
            (
                row.name,
                row.embedder_id,
                _status(row),
                row.source,
                output.NONE if active is None else active.number,
                output.NONE if active is None else active.counts.chunks,
                output.utc_time(None if active is None else active.activated_at),
            )
            for row, active in kbs
        ),
        ("NAME", "EMBEDDER", "STATUS", "SOURCE", "ACTIVE GEN", "CHUNKS", "ACTIVATED"),
    )
    return 0


def _generation_json(g: store.Generation) -> dict[str, Any]:
    return {
        "number": g.number,
        "state": str(g.state),
        "embedder_id": g.embedder_id,
        "dims": g.dims,
        "documents": g.counts.documents,
        "chunks": g.counts.chunks,
        "embedded": g.counts.embedded,
        "carried": g.counts.carried,
        "deleted": g.counts.deleted,
        "gate_scores": g.gate_scores,
        "error": g.error,
        "run_id": g.run_id,
        "started_at": output.iso(g.started_at),
        "finished_at": output.iso(g.finished_at),
        "activated_at": output.iso(g.activated_at),
    }


def _kb_json(row: store.KnowledgeBase, active: store.Generation | None) -> dict[str, Any]:
    return {
        "name": row.name,
        "embedder_id": row.embedder_id,
        "dims": row.dims,
        "source": row.source,
        "orphaned": row.orphaned,
        "active_generation": None if active is None else _generation_json(active),
    }


def _scores_text(scores: Any) -> str | None:
    if not isinstance(scores, dict) or not isinstance(scores.get("candidate"), dict):
        return None
    s = scores["candidate"]
    return f"hit@{s['k']} {s['hit_at_k']:.2f}, MRR {s['mrr']:.2f}, recall@{s['k']} {s['recall_at_k']:.2f}"


@dataclass(frozen=True)
class _Shown:
    row: store.KnowledgeBase
    generations: list[store.Generation]
    last_run: asyncpg.Record | None


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> _Shown:
        row = await _kb(db.conn, args.name)
        generations = await store.list_generations(db.conn, row.name)
        return _Shown(row, generations, await db.conn.fetchrow(sql("cli_kb_last_run"), row.name))

    shown = run_with_database(settings, fetch)
    row, last = shown.row, shown.last_run
    active = _active(shown.generations, row)
    definition = KnowledgeBase.from_json(row.definition)
    if args.json:
        output.print_json(
            {
                **_kb_json(row, active),
                "definition": row.definition,
                "generations": len(shown.generations),
                "last_run": None
                if last is None
                else {
                    "id": last["id"],
                    "schedule": last["schedule_name"],
                    "state": last["state"],
                    "started_at": output.iso(last["started_at"]),
                    "finished_at": output.iso(last["finished_at"]),
                    "error": last["error"],
                },
            }
        )
        return 0
    output.print_fields(
        (
            ("name", row.name),
            ("status", _status(row)),
            ("source", row.source),
            ("embedder", f"{row.embedder_id} ({row.dims} dimensions)"),
            ("sources", "; ".join(output.json_text(spec.to_json()) for spec in definition.sources)),
            ("golden queries", len(definition.golden)),
            ("active generation", output.NONE if active is None else active.number),
            ("chunks", output.NONE if active is None else active.counts.chunks),
            ("documents", output.NONE if active is None else active.counts.documents),
            ("gate scores", None if active is None else _scores_text(active.gate_scores)),
            ("activated", output.utc_time(None if active is None else active.activated_at)),
            ("generations", len(shown.generations)),
            (
                "last run",
                None
                if last is None
                else f"#{last['id']} {last['state']} at {output.utc_time(last['finished_at'] or last['started_at'])}",
            ),
        )
    )
    return 0


def generations_command(args: argparse.Namespace, settings: Settings) -> int:
    async def fetch(db: Database) -> list[store.Generation]:
        row = await _kb(db.conn, args.name)
        return await store.list_generations(db.conn, row.name)

    generations = run_with_database(settings, fetch)
    if args.json:
        output.print_json([_generation_json(g) for g in generations])
        return 0
    if not generations:
        print(f'knowledge base "{args.name}" has no generation yet: punchclock kb reindex {args.name}')
        return 0
    output.print_table(
        (
            (
                g.number,
                str(g.state),
                g.counts.documents,
                g.counts.chunks,
                g.counts.embedded,
                _scores_text(g.gate_scores) or output.NONE,
                output.utc_time(g.finished_at),
                output.one_line(g.error, 40) if g.error else output.NONE,
            )
            for g in generations
        ),
        ("GEN", "STATE", "DOCS", "CHUNKS", "EMBEDDED", "GATE", "FINISHED", "ERROR"),
    )
    return 0


# --- rollback, add -------------------------------------------------------------------------------------------


def rollback_command(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Database) -> store.Generation:
        row = await _kb(db.conn, args.name)
        return await store.rollback(db.conn, row.name, args.number)

    generation = run_with_database(settings, work)
    print(f'knowledge base "{args.name}": generation {generation.number} is active')
    return 0


def add_command(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read the definition file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"invalid definition file {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    kb = KnowledgeBase.from_json(data)
    for entry in kb.notify:
        parse_target(entry, allow_link_local=settings.notify_allow_link_local)
    config = LLMConfig.from_settings(settings)
    registry.embedder_identity(kb, config)  # checked before the database is touched: a refused add writes nothing

    async def work(db: Database) -> store.KnowledgeBase:
        existing = await db.conn.fetchrow(sql("kb_get"), kb.name)
        if existing is not None and existing["source"] == "code":
            raise InvalidInput(
                f'knowledge base "{kb.name}" is declared in schedules.py: change it there (a worker syncs it at boot)'
            )
        return await registry.save(db.conn, kb, config, source="cli")

    row = run_with_database(settings, work)
    print(f'knowledge base "{row.name}" saved ({row.embedder_id}): punchclock kb reindex {row.name}')
    return 0


# --- reindex, search -----------------------------------------------------------------------------------------


class ProgressLine:
    """The reindex's progress on stderr: redrawn in place on a terminal, a line every few seconds elsewhere."""

    def __init__(self, name: str, *, tty: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.tty = tty
        self.clock = clock
        self.started = clock()
        self.shown_at: float | None = None
        self.last: Progress | None = None

    def text(self, progress: Progress) -> str:
        elapsed = self.clock() - self.started
        line = f"{self.name}: {progress.scanned} files scanned, {progress.embedded} chunks embedded"
        if progress.expected and 0 < progress.scanned < progress.expected:
            # The last reindex's count of documents is the best guess of how many there are: an estimate.
            eta = elapsed * (progress.expected - progress.scanned) / progress.scanned
            line += f" ({progress.scanned}/{progress.expected}, ETA {output.duration(timedelta(seconds=round(eta)))})"
        return line

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        now = self.clock()
        every = _TTY_EVERY if self.tty else _PIPE_EVERY
        if self.shown_at is not None and now - self.shown_at < every:
            return
        self.shown_at = now
        self._write(self.text(progress))

    def _write(self, line: str) -> None:
        if self.tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.last is not None:
            self._write(self.text(self.last))
        if self.tty and self.shown_at is not None:
            print(file=sys.stderr)


def reindex_command(args: argparse.Namespace, settings: Settings) -> int:
    config = LLMConfig.from_settings(settings)
    progress = ProgressLine(args.name, tty=sys.stderr.isatty())

    async def work(db: Database) -> ReindexReport:
        await _kb(db.conn, args.name)
        pool = await create_pool(db.url, 2)
        try:
            async with httpx.AsyncClient() as client:
                return await reindex_kb(
                    pool, args.name, http=client, llm_config=config, full=args.full, progress=progress
                )
        finally:
            progress.done()
            await pool.close()

    report = run_with_database(settings, work)
    if args.json:
        output.print_json(report_json(report))
    else:
        print(report.summary())
        if report.verdict is not None and report.verdict.reasons:
            for reason in report.verdict.reasons:
                print(f"  {reason}")
        for key, why in report.failed.items():
            print(f"  failed: {key}: {why}")
    return 0


def search_command(args: argparse.Namespace, settings: Settings) -> int:
    config = LLMConfig.from_settings(settings)

    async def work(db: Database) -> list[store.Hit]:
        row = await _kb(db.conn, args.name)
        async with httpx.AsyncClient() as client:
            return await search_kb(db.conn, row.name, args.query, k=args.k, http=client, llm_config=config)

    hits = run_with_database(settings, work)
    if args.json:
        output.print_json([hit_json(hit) for hit in hits])
        return 0
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. {hit.source}  (score {hit.score:.3f})")
        print(f"   {output.one_line(hit.text, 200)}")
    return 0


def golden_command(args: argparse.Namespace, settings: Settings) -> int:
    config = LLMConfig.from_settings(settings)

    async def work(db: Database) -> Evaluation:
        row = await _kb(db.conn, args.name)
        async with httpx.AsyncClient() as client:
            return await score_active(db.conn, row.name, http=client, llm_config=config)

    evaluation = run_with_database(settings, work)
    if args.json:
        output.print_json(evaluation.to_json())
        return 0
    k = evaluation.k
    output.print_table(
        (
            (
                output.one_line(score.query, 50),
                "hit" if score.hit else "MISS",
                score.first_relevant_rank or output.NONE,
                ", ".join(score.top_sources[:3]) or output.NONE,
            )
            for score in evaluation.queries
        ),
        ("QUERY", f"@{k}", "RANK", "TOP SOURCES"),
    )
    print(f"hit@{k} {evaluation.hit_at_k:.2f}, MRR {evaluation.mrr:.2f}, recall@{k} {evaluation.recall_at_k:.2f}")
    return 0

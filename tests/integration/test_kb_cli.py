"""``punchclock kb …`` and the sync of code knowledge bases, against the real PostgreSQL with pgvector: a folder
knowledge base in tmp_path, the lexical embedder (offline).

``main`` runs its own event loop (``asyncio.run``), so the tests call it in a thread and check the database
through the ``pool`` fixture on the session loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from app.ai.config import LLMConfig
from app.boot import prepare_database
from app.cli.main import main
from app.errors import InvalidInput
from app.kb import registry, store
from app.kb.definition import Folder, KnowledgeBase
from app.kb.gate import Gate, GoldenQuery
from app.settings import Settings

if TYPE_CHECKING:
    Pool = asyncpg.Pool[Any]
CONFIG = LLMConfig.from_settings(Settings())

BILLING = """# Billing

Invoices are sent on the first day of each month. A refund is paid back to the card that paid the invoice,
within ten working days of the request.
"""
TRAVEL = """# Travel

Book flights through the travel desk at least two weeks ahead. Hotel nights are reimbursed up to the city's
allowance; keep every receipt.
"""


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def folder_kb(root: Path, name: str = "handbook", **kwargs: Any) -> KnowledgeBase:
    return KnowledgeBase(name, sources=[Folder(str(root), "**/*.md")], **kwargs)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "billing.md").write_text(BILLING, encoding="utf-8")
    (root / "travel.md").write_text(TRAVEL, encoding="utf-8")
    return root


def definition_file(tmp_path: Path, kb: KnowledgeBase) -> str:
    path = tmp_path / f"{kb.name}.json"
    path.write_text(json.dumps(kb.to_json()), encoding="utf-8")
    return str(path)


async def test_add_reindex_search_show_generations_rollback(
    punchclock_env: dict[str, str], pool: Pool, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = folder_kb(docs, golden=[GoldenQuery("refund of an invoice", expected_sources=("billing.md",))])
    assert await cli("kb", "add", definition_file(tmp_path, kb)) == 0
    assert 'knowledge base "handbook" saved (lexical-v1-384)' in capsys.readouterr().out

    assert await cli("kb", "reindex", "handbook", "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["generation"], report["activated"], report["fetched"]) == (1, True, 2)
    assert report["verdict"]["passed"] is True
    # not a terminal: the progress line is printed once, at the end
    assert captured.err.strip().splitlines()[-1].startswith("handbook: 2 files scanned, ")

    assert await cli("kb", "search", "handbook", "when is my refund paid back", "-k", "2", "--json") == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["source"] == "billing.md"
    assert "refund" in hits[0]["text"]

    assert await cli("kb", "show", "handbook", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["active_generation"]["number"] == 1
    assert shown["active_generation"]["gate_scores"]["candidate"]["hit_at_k"] == 1.0
    assert shown["definition"]["sources"] == [{"kind": "folder", "path": str(docs), "glob": "**/*.md"}]
    assert shown["last_run"] is None  # reindexed from the CLI: no run
    assert await cli("kb", "show", "handbook") == 0
    text = capsys.readouterr().out
    assert "active generation:" in text and "hit@5 1.00" in text

    assert await cli("kb", "golden", "handbook", "--json") == 0
    scored = json.loads(capsys.readouterr().out)
    assert (scored["hit_at_k"], scored["queries"][0]["first_relevant_rank"]) == (1.0, 1)
    assert await cli("kb", "golden", "handbook") == 0
    assert "hit@5 1.00, MRR 1.00, recall@5 1.00" in capsys.readouterr().out

    (docs / "travel.md").write_text(TRAVEL + "\nTrains are booked the same way.\n", encoding="utf-8")
    assert await cli("kb", "reindex", "handbook") == 0
    assert 'knowledge base "handbook" generation 2:' in capsys.readouterr().out

    assert await cli("kb", "rollback", "handbook") == 0
    assert 'knowledge base "handbook": generation 1 is active' in capsys.readouterr().out
    assert await cli("kb", "generations", "handbook", "--json") == 0
    states = [(g["number"], g["state"]) for g in json.loads(capsys.readouterr().out)]
    assert states == [(1, "active"), (2, "retired")]

    assert await cli("kb", "list", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["source"], listed["active_generation"]["number"]) == ("handbook", "cli", 1)


async def test_unknown_kb_exits_2_naming_it_and_the_known_ones(
    punchclock_env: dict[str, str], docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("kb", "add", definition_file(tmp_path, folder_kb(docs))) == 0
    capsys.readouterr()
    for argv in (
        ("show", "nope"),
        ("reindex", "nope"),
        ("search", "nope", "refund"),
        ("generations", "nope"),
        ("golden", "nope"),
        ("rollback", "nope"),
    ):
        assert await cli("kb", *argv) == 2, argv
        err = capsys.readouterr().err
        assert 'no knowledge base named "nope": known ones are handbook' in err, argv


async def test_add_refuses_a_bad_definition_and_writes_nothing(
    punchclock_env: dict[str, str], pool: Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "sources": [], "embedder": "lexical"}), encoding="utf-8")
    assert await cli("kb", "add", str(bad)) == 2
    assert 'knowledge base "x" has no sources' in capsys.readouterr().err
    remote = tmp_path / "remote.json"
    remote.write_text(
        json.dumps({"name": "y", "sources": [{"kind": "folder", "path": "docs"}], "embedder": "openai"}),
        encoding="utf-8",
    )
    assert await cli("kb", "add", str(remote)) == 2
    assert "uses the openai embedder without dims" in capsys.readouterr().err
    async with pool.acquire() as conn:
        assert await store.list_kbs(conn) == []


async def test_search_before_any_reindex_says_to_run_one(
    punchclock_env: dict[str, str], docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("kb", "add", definition_file(tmp_path, folder_kb(docs))) == 0
    capsys.readouterr()
    assert await cli("kb", "search", "handbook", "refund") == 2
    assert 'knowledge base "handbook" has no active generation yet: run its reindex' in capsys.readouterr().err
    assert await cli("kb", "golden", "handbook") == 2  # no golden queries
    assert 'knowledge base "handbook" has no golden queries' in capsys.readouterr().err


async def test_a_failed_gate_exits_1_and_keeps_the_active_generation(
    punchclock_env: dict[str, str], pool: Pool, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pool.acquire() as conn:
        await registry.save(conn, folder_kb(docs), CONFIG)
    assert await cli("kb", "reindex", "handbook") == 0
    strict = folder_kb(
        docs,
        golden=[GoldenQuery("refund of an invoice", expected_keywords=("no such words anywhere",))],
        gate=Gate(min_hit_at_k=1.0),
    )
    async with pool.acquire() as conn:
        await registry.save(conn, strict, CONFIG)
    assert await cli("kb", "reindex", "handbook", "--full") == 1
    assert "gate" in capsys.readouterr().err
    async with pool.acquire() as conn:
        generations = await store.list_generations(conn, "handbook")
    assert [(g.number, str(g.state)) for g in generations] == [(1, "active"), (2, "failed")]


async def test_code_kbs_are_synced_at_boot_and_orphaned_when_removed(pool: Pool, docs: Path) -> None:
    actors: dict[str, Any] = {}
    await prepare_database(pool, [], actors, kbs=[folder_kb(docs), folder_kb(docs, "other")], llm_config=CONFIG)
    async with pool.acquire() as conn:
        rows = {row.name: row for row in await store.list_kbs(conn)}
        assert {name: (row.source, row.orphaned) for name, row in rows.items()} == {
            "handbook": ("code", False),
            "other": ("code", False),
        }
        assert rows["handbook"].embedder_id == "lexical-v1-384"
        assert await registry.load(conn, "handbook") == folder_kb(docs)

    # "other" removed from code: kept, marked; "handbook" changed: updated
    changed = folder_kb(docs, keep_generations=5)
    await prepare_database(pool, [], actors, kbs=[changed], llm_config=CONFIG)
    async with pool.acquire() as conn:
        rows = {row.name: row for row in await store.list_kbs(conn)}
        assert {name: row.orphaned for name, row in rows.items()} == {"handbook": False, "other": True}
        assert (await registry.load(conn, "handbook")).keep_generations == 5

        # declared again: no longer orphaned
        names, orphaned = await registry.sync_code_kbs(conn, [changed, folder_kb(docs, "other")], CONFIG)
        assert (names, orphaned) == (["handbook", "other"], [])
        assert not (await store.get_kb(conn, "other")).orphaned


async def test_sync_refuses_a_name_declared_twice_and_writes_nothing(pool: Pool, docs: Path) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(InvalidInput, match="declares handbook more than once"):
            await registry.sync_code_kbs(conn, [folder_kb(docs), folder_kb(docs, keep_generations=2)], CONFIG)
        assert await store.list_kbs(conn) == []


async def test_the_projects_docs_kb_passes_its_own_gate(
    punchclock_env: dict[str, str], pool: Pool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """schedules.py's example: its golden queries hold for docs/ with the lexical embedder."""
    import schedules

    monkeypatch.chdir(Path(schedules.__file__).parent)  # Folder("docs") is read from the working directory
    (docs_kb,) = schedules.KNOWLEDGE_BASES
    async with pool.acquire() as conn:
        await registry.sync_code_kbs(conn, [docs_kb], CONFIG)
    assert await cli("kb", "reindex", "docs", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activated"] is True
    assert report["verdict"]["scores"]["hit_at_k"] == 1.0
    assert await cli("kb", "search", "docs", "what does punchclock survive", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["source"] == "faults.md"


async def test_add_refuses_a_code_knowledge_base_and_updates_a_cli_one(
    punchclock_env: dict[str, str], pool: Pool, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pool.acquire() as conn:
        await registry.sync_code_kbs(conn, [folder_kb(docs, "code-kb")], CONFIG)
    assert await cli("kb", "add", definition_file(tmp_path, folder_kb(docs, "code-kb", keep_generations=9))) == 2
    assert 'knowledge base "code-kb" is declared in schedules.py: change it there' in capsys.readouterr().err

    assert await cli("kb", "add", definition_file(tmp_path, folder_kb(docs))) == 0
    assert await cli("kb", "add", definition_file(tmp_path, folder_kb(docs, keep_generations=7))) == 0
    async with pool.acquire() as conn:
        assert (await registry.load(conn, "code-kb")).keep_generations == 3
        assert (await registry.load(conn, "handbook")).keep_generations == 7

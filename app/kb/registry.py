"""Knowledge base definitions in the database: saved, loaded back, and the ones declared in code synced at boot.

    save(conn, kb, llm_config, source="cli")   the definition's JSON, with the embedder id and dims it is built with
    load(conn, "docs")                         the KnowledgeBase stored under that name
    sync_code_kbs(conn, kbs, llm_config)       as for schedules: declared ones created or updated, ones removed
                                               from code marked orphaned, never deleted

Decision, an ``openai`` embedder: its ``dims`` must be declared. The row's ``embedder_id`` and ``dims`` name the
embedder the next generation is built with, and are checked (1 to 2,000, HNSW's limit) when the definition is
saved: a dimension learned only at the first reindex would leave the row with a placeholder that every reader
must know to distrust, and a model answering more dimensions than HNSW indexes would only fail mid-build.
Declaring ``dims=1536`` costs one line and fails where it is written. The id (``openai:<host>:<model>``) comes
from ``PUNCHCLOCK_EMBEDDING_*``: saving such a definition where none is configured raises ConfigurationError
naming the variables to set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from app.ai.config import LLMConfig
from app.db.queries import sql
from app.errors import InvalidInput
from app.kb import store
from app.kb.definition import KnowledgeBase
from app.kb.embedders import remote_embedder_id
from app.kb.lexical import DEFAULT_DIMS, LexicalEmbedder

if TYPE_CHECKING:
    from app.db.pool import Connection

logger = logging.getLogger(__name__)


def embedder_identity(kb: KnowledgeBase, config: LLMConfig) -> tuple[str, int]:
    """The id and dimensions of the embedder ``kb`` declares (see the module docstring for ``openai``)."""
    if kb.embedder == "openai":
        if kb.dims is None:
            raise InvalidInput(
                f'knowledge base "{kb.name}" uses the openai embedder without dims: declare its model\'s'
                " dimensions (dims=1536 for text-embedding-3-small, 1024 for text-embedding-v3)"
            )
        endpoint = config.embeddings
        model = endpoint.model_for(None)  # ConfigurationError naming PUNCHCLOCK_EMBEDDING_* when not set
        return remote_embedder_id(endpoint.server_address, model), kb.dims
    lexical = LexicalEmbedder(kb.dims if kb.dims is not None else DEFAULT_DIMS)
    return lexical.id, lexical.dims


async def save(
    conn: Connection, kb: KnowledgeBase, config: LLMConfig, *, source: Literal["code", "cli"] = "cli"
) -> store.KnowledgeBase:
    """Create or update ``kb``'s row (its generations are left alone: a new embedder applies from the next one)."""
    embedder_id, dims = embedder_identity(kb, config)
    return await store.upsert_kb(conn, kb.name, kb.to_json(), embedder_id=embedder_id, dims=dims, source=source)


async def load(conn: Connection, name: str) -> KnowledgeBase:
    """The definition stored as ``name``; NotFound (``kb list`` to see them) when there is none."""
    return KnowledgeBase.from_json((await store.get_kb(conn, name)).definition)


def check_unique(kbs: Iterable[KnowledgeBase]) -> list[KnowledgeBase]:
    declared = list(kbs)
    names = [kb.name for kb in declared]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(
            f"KNOWLEDGE_BASES declares {', '.join(duplicates)} more than once: knowledge base names must be unique"
        )
    return declared


async def sync_code_kbs(
    conn: Connection, kbs: Iterable[KnowledgeBase], config: LLMConfig
) -> tuple[list[str], list[str]]:
    """Make the database match ``KNOWLEDGE_BASES``: (names synced, names orphaned). All or nothing.

    A code knowledge base removed from code is marked orphaned and kept: its active generation keeps answering
    searches (a workflow still reading it keeps working) and its history stays; ``kb list`` shows it orphaned. A
    CLI one of the same name as a code one becomes the code one, as schedules do."""
    declared = check_unique(kbs)
    names = [kb.name for kb in declared]
    async with conn.transaction():
        for kb in declared:
            await save(conn, kb, config, source="code")
        orphaned = [row["name"] for row in await conn.fetch(sql("kb_orphan_code"), names)]
    for name in orphaned:
        logger.warning(
            "knowledge base removed from code: kept, marked orphaned", extra={"action": "kb_orphaned", "kb": name}
        )
    logger.info("knowledge bases synced", extra={"action": "kbs_synced", "count": len(names)})
    return names, orphaned

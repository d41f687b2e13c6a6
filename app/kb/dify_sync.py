"""A knowledge base's Dify target (``KnowledgeBase(..., dify=DifyTarget(...))``): after the new generation passed
the local gate, its changed documents are pushed to the Dify dataset, and, with ``gate=True``, the golden queries
are scored through Dify's retrieve API too; a failing Dify gate fails the reindex like the local one.

    sync = DifySync.start(definition, http)        # None when the knowledge base has no Dify target
    sync.fetched(key, data)                         # during the scan, for each Fetched document
    report = await sync.push_and_gate(conn, kb, definition, seen=..., skipped=..., active=...)

Decisions:

- **Document = source.** Each source key is one Dify document, named by the key; its id is kept in
  ``kb_dify_documents`` (migration 0008) and written the moment Dify answers, so a run that fails afterwards does
  not forget it: the next run (which reads the document again, its state not having been stored) updates it
  rather than create a duplicate.
- **Only what changed is pushed.** Fetched documents whose extracted text hashes as last pushed are left alone
  (a rescan after a rollback or a new embedder re-reads everything: Dify need not re-index it all). Documents gone
  from the sources, or now skipped (no text), are deleted from Dify; failed reads are left as they are.
- **Dify has no generations.** The push happens before the switch and cannot be taken back: when Dify's gate
  fails, the local active generation keeps answering and the run fails, while the Dify dataset already holds the
  new documents. The next run pushes again whatever the sources then hold.
- **Texts are spooled to a temporary file** during the scan, so memory stays bounded by one batch as the reindex
  promises; they are extracted again at push time (``extract_text`` is pure and deterministic).
- **Dify's gate** maps each retrieved chunk to its source by the document id we stored (the document name, the
  source key, when the id is unknown), scores it with ``app/kb/gate.py``, and judges it with the definition's
  gate against the Dify scores stored with the active generation (``gate_results["dify"]``), if any.
- Documents already indexed locally but never pushed (a Dify target added to an existing knowledge base) are not
  read again by an incremental reindex: they are counted as ``missing`` and logged; ``full=True`` pushes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any

import httpx

from app.db.queries import sql
from app.kb.definition import DifyTarget, KnowledgeBase
from app.kb.dify_dataset import DifyDatasetClient, DifyDocumentMissing, Record
from app.kb.formats import extract_text
from app.kb.gate import Evaluation, Retrieved, Verdict, evaluate
from app.transient import PermanentError

if TYPE_CHECKING:
    from app.db.pool import Connection
    from app.kb.store import Generation

logger = logging.getLogger(__name__)

ClientFactory = Callable[[DifyTarget], DifyDatasetClient]
# Documents larger than this are extracted in a thread (as in app/kb/reindex.py).
_INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class DifyDocument:
    source_key: str
    dataset_id: str
    document_id: str
    sha256: str


@dataclass(frozen=True)
class SyncPlan:
    """What to do in Dify (pure): ``create`` and ``update`` hold (key, text sha256[, document id])."""

    create: tuple[tuple[str, str], ...] = ()
    update: tuple[tuple[str, str, str], ...] = ()  # key, sha256, document id
    same: tuple[str, ...] = ()  # fetched, with the text Dify already holds
    delete: tuple[tuple[str, str], ...] = ()  # key, document id
    forget: tuple[str, ...] = ()  # rows of another dataset whose source is gone: nothing to delete in this one
    missing: tuple[str, ...] = ()  # seen, not fetched, and not in this dataset


def plan_sync(
    dataset_id: str,
    known: Mapping[str, DifyDocument],
    texts: Mapping[str, str],
    seen: Iterable[str],
    skipped: Iterable[str] = (),
) -> SyncPlan:
    """``texts``: the sha256 of each fetched document's text; ``seen``: every key this scan listed (fetched,
    unchanged or failed); ``skipped``: fetched keys that gave no text."""
    mine = {key: doc for key, doc in known.items() if doc.dataset_id == dataset_id}
    seen_keys = set(seen)
    no_text = set(skipped)
    create, update, same = [], [], []
    for key, digest in sorted(texts.items()):
        doc = mine.get(key)
        if doc is None:
            create.append((key, digest))
        elif doc.sha256 == digest:
            same.append(key)
        else:
            update.append((key, digest, doc.document_id))
    delete = sorted((key, doc.document_id) for key, doc in mine.items() if key not in seen_keys or (key in no_text))
    forget = sorted(key for key, doc in known.items() if doc.dataset_id != dataset_id and key not in seen_keys)
    missing = sorted(key for key in seen_keys - set(texts) - no_text if key not in mine)
    return SyncPlan(tuple(create), tuple(update), tuple(same), tuple(delete), tuple(forget), tuple(missing))


def to_retrieved(records: Sequence[Record], keys_by_document: Mapping[str, str]) -> list[Retrieved]:
    """Dify's records as the gate's results: the source is the key we stored for the document id, else the
    document's name (which is the source key, as pushed)."""
    return [
        Retrieved(keys_by_document.get(record.document_id, record.document_name), record.content) for record in records
    ]


def previous_evaluation(active: Generation | None, k: int) -> Evaluation | None:
    """The Dify scores stored with the active generation at the same ``k``, if any."""
    stored = active.gate_results if active is not None else None
    dify = stored.get("dify") if isinstance(stored, Mapping) else None
    if not isinstance(dify, Mapping) or "candidate" not in dify:
        return None
    try:
        was = Evaluation.from_json(dify["candidate"])
    except (KeyError, TypeError, ValueError):
        return None
    return was if was.k == k else None


@dataclass(frozen=True)
class DifyReport:
    dataset_id: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    missing: Sequence[str] = ()
    verdict: Verdict | None = None

    def summary(self) -> str:
        gate = "" if self.verdict is None else (", gate passed" if self.verdict.passed else ", gate FAILED")
        missing = f", {len(self.missing)} never pushed (reindex with full=True)" if self.missing else ""
        return (
            f"Dify dataset {self.dataset_id}: {self.created} created, {self.updated} updated, {self.deleted} deleted"
            f"{missing}{gate}"
        )


class _Spool:
    """Fetched documents' bytes in an unlinked temporary file: (key, offset, length) in memory only."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._index: list[tuple[str, int, int]] = []
        self._size = 0

    def add(self, key: str, data: bytes) -> None:
        if self._file is None:
            # closed by close(), which reindex calls whatever happens
            self._file = tempfile.TemporaryFile(prefix="punchclock-dify-")  # noqa: SIM115
        self._file.seek(0, os.SEEK_END)
        self._file.write(data)
        self._index.append((key, self._size, len(data)))
        self._size += len(data)

    def spooled(self) -> list[str]:
        return [key for key, _, _ in self._index]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for key, offset, length in self._index:
            assert self._file is not None
            self._file.seek(offset)
            yield key, self._file.read(length)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class DifySync:
    client: DifyDatasetClient
    _spool: _Spool = field(default_factory=_Spool)

    @classmethod
    def start(
        cls, definition: KnowledgeBase, http: httpx.AsyncClient, factory: ClientFactory | None = None
    ) -> DifySync | None:
        if definition.dify is None:
            return None
        client = (
            factory(definition.dify) if factory is not None else DifyDatasetClient(http, definition.dify, os.environ)
        )
        client.check_key()  # before the scan: a missing key should not cost a whole build first
        return cls(client)

    @property
    def target(self) -> DifyTarget:
        return self.client.target

    def fetched(self, key: str, data: bytes) -> None:
        self._spool.add(key, data)

    def close(self) -> None:
        self._spool.close()

    async def push_and_gate(
        self,
        conn: Connection,
        kb: str,
        definition: KnowledgeBase,
        *,
        seen: Iterable[str],
        skipped: Iterable[str],
        active: Generation | None,
    ) -> DifyReport:
        """Push what changed, wait for Dify to index it, then (``gate=True``, golden queries) judge Dify's answers;
        PermanentError when the Dify gate fails."""
        target = self.target
        known = await _get_documents(conn, kb)
        texts = await self._texts()
        # a blank text is no document for Dify either, even when the reindex kept its (empty) chunk list
        no_text = {*skipped, *(key for key in self._spool.spooled() if key not in texts)}
        plan = plan_sync(target.dataset_id, known, {key: _sha256(text) for key, text in texts.items()}, seen, no_text)
        ids = {key: doc.document_id for key, doc in known.items() if doc.dataset_id == target.dataset_id}
        batches = []
        created = updated = 0
        for key, digest in plan.create:
            pushed = await self.client.create(key, texts[key])
            await _put_document(conn, kb, DifyDocument(key, target.dataset_id, pushed.document_id, digest))
            ids[key] = pushed.document_id
            batches.append(pushed.batch)
            created += 1
        for key, digest, document_id in plan.update:
            try:
                pushed = await self.client.update(document_id, key, texts[key])
                updated += 1
            except DifyDocumentMissing:
                # deleted in Dify meanwhile: create it again rather than fail every reindex from now on
                pushed = await self.client.create(key, texts[key])
                created += 1
            await _put_document(conn, kb, DifyDocument(key, target.dataset_id, pushed.document_id, digest))
            ids[key] = pushed.document_id
            batches.append(pushed.batch)
        for key, document_id in plan.delete:
            await self.client.delete(document_id)
            await _delete_document(conn, kb, key)
            ids.pop(key, None)
        for key in plan.forget:
            await _delete_document(conn, kb, key)
        for batch in batches:
            await self.client.wait_indexed(batch)
        if plan.missing:
            logger.warning(
                "documents of the knowledge base are not in its Dify dataset: reindex with full=True to push them",
                extra={
                    "action": "kb_dify_missing",
                    "kb": kb,
                    "dataset": target.dataset_id,
                    "missing": len(plan.missing),
                },
            )
        report = DifyReport(
            target.dataset_id,
            created=created,
            updated=updated,
            unchanged=len(plan.same),
            deleted=len(plan.delete),
            missing=plan.missing,
        )
        logger.info(
            "Dify dataset updated",
            extra={
                "action": "kb_dify_pushed",
                "kb": kb,
                "dataset": target.dataset_id,
                "documents_created": report.created,
                "documents_updated": report.updated,
                "documents_deleted": report.deleted,
            },
        )
        if not (target.gate and definition.golden):
            return report
        verdict = await self._gate(definition, {document_id: key for key, document_id in ids.items()}, active)
        if not verdict.passed:
            reasons = "; ".join(verdict.reasons)
            raise PermanentError(
                f'knowledge base "{kb}": Dify dataset {target.dataset_id} failed the gate ({reasons}); the new'
                " generation is not activated (the Dify dataset keeps the documents pushed). Fix the sources, or the"
                " golden queries if they are out of date, and reindex"
            )
        return replace(report, verdict=verdict)

    async def _texts(self) -> dict[str, str]:
        """Each spooled document's text (documents giving none are left out: plan_sync deletes them)."""
        texts = {}
        for key, data in self._spool:
            if len(data) > _INLINE_BYTES:
                extracted = await asyncio.to_thread(extract_text, key, data)
            else:
                extracted = extract_text(key, data)
            if extracted.text is not None and extracted.text.strip():
                texts[key] = extracted.text
        return texts

    async def _gate(self, definition: KnowledgeBase, keys: Mapping[str, str], active: Generation | None) -> Verdict:
        k = definition.golden_k
        results = {
            query.query: to_retrieved(await self.client.retrieve(query.query, k), keys) for query in definition.golden
        }
        candidate = evaluate(definition.golden, results, k=k)
        return definition.gate.judge(candidate, previous_evaluation(active, k))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _get_documents(conn: Connection, kb: str) -> dict[str, DifyDocument]:
    rows = await conn.fetch(sql("kb_dify_get_documents"), kb)
    return {row["source_key"]: DifyDocument(**dict(row)) for row in rows}


async def _put_document(conn: Connection, kb: str, doc: DifyDocument) -> None:
    await conn.execute(sql("kb_dify_put_document"), kb, doc.source_key, doc.dataset_id, doc.document_id, doc.sha256)


async def _delete_document(conn: Connection, kb: str, key: str) -> None:
    await conn.execute(sql("kb_dify_delete_document"), kb, key)


def gate_results_with_dify(local: dict[str, Any] | None, report: DifyReport | None) -> dict[str, Any] | None:
    """The generation's gate_results, with Dify's verdict under ``"dify"`` (read back by the next Dify gate)."""
    if report is None or report.verdict is None:
        return local
    return {**(local or {}), "dify": report.verdict.to_json()}

"""A folder on this machine as a knowledge base's source: ``FolderSource(Path("docs"), "**/*.md")``.

Keys are the files' paths relative to the root, with ``/`` on every platform, so a key means the same file
wherever the folder is mounted. A file whose mtime (nanoseconds) and size equal the previous state's is
:class:`Unchanged` without being read; otherwise it is read and its sha256 compared, because a ``git checkout``
or a copy touches mtimes of files whose content did not change. mtime goes in ``last_modified`` (as text: the
column holds validators as servers send them) and the size in ``size``.

Files and folders whose name starts with ``.`` are left out: ``.git``, editors' swap files and ``.DS_Store`` are
never documents, and a glob of ``**/*`` would otherwise index a repository's object store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.kb.sources.base import Failed, Fetched, Outcome, Unchanged, sha256
from app.kb.store import SourceState
from app.transient import PermanentError


@dataclass(frozen=True)
class _Listed:
    key: str
    path: Path
    mtime_ns: int
    size: int


class FolderSource:
    def __init__(self, root: Path, glob: str = "**/*") -> None:
        self.root = Path(root)
        self.glob = glob

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, {self.glob!r})"

    def describe(self) -> str:
        return f"folder {self.root} ({self.glob})"

    async def scan(self, known: Mapping[str, SourceState], http: httpx.AsyncClient) -> AsyncIterator[Outcome]:
        # The listing is one blocking walk: done in a thread so the worker's event loop keeps serving.
        listed = await asyncio.to_thread(self._list)
        for entry in listed:
            previous = known.get(entry.key)
            mtime = str(entry.mtime_ns)
            if previous is not None and previous.last_modified == mtime and previous.size == entry.size:
                yield Unchanged(entry.key, previous)
                continue
            try:
                data = await asyncio.to_thread(entry.path.read_bytes)
            except OSError as error:
                # PermissionError needs someone to fix the file's mode; a file removed or locked while being
                # read may well be readable at the next reindex.
                transient = not isinstance(error, PermissionError)
                yield Failed(entry.key, f"{entry.path}: {error.strerror or error}", transient)
                continue
            # The size read, not the size listed: the file may have grown since.
            state = SourceState(entry.key, last_modified=mtime, sha256=sha256(data), size=len(data))
            if previous is not None and previous.sha256 == state.sha256:
                yield Unchanged(entry.key, state)
            else:
                yield Fetched(entry.key, data, state)

    def _list(self) -> list[_Listed]:
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            # Raised, not an empty listing: a missing mount must not delete every document of the knowledge base.
            raise PermanentError(
                f"folder source {self.root} {what}: create it, mount it, or fix the path in the knowledge base's"
                " definition (nothing was deleted)"
            )
        listed = []
        for path in self.root.glob(self.glob):
            relative = path.relative_to(self.root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            try:
                if not path.is_file():
                    continue
                stat = path.stat()
            except OSError:
                continue  # vanished between the listing and the stat: it is not in this listing
            listed.append(_Listed(relative.as_posix(), path, stat.st_mtime_ns, stat.st_size))
        listed.sort(key=lambda entry: entry.key)
        return listed

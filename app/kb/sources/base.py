"""What every kind of source yields when a reindex scans it, given what the last reindex saw.

A scan walks the source's complete listing and yields one outcome per document key (a path, a URL, an object
key), in a stable order:

- :class:`Fetched`: the document is new or its content changed: its bytes and its new state (validators and
  sha256). A source that re-downloaded a document whose validators were weak yields :class:`Unchanged` when the
  sha256 matches the previous one: validators are often missing or wrong, the content's hash is the truth.
- :class:`Unchanged`: nothing to re-read (a 304, an equal ETag or mtime and size, or an equal sha256); its
  chunks are carried into the next generation without embedding anything.
- :class:`Failed`: it could not be read this time (a 404, a timeout, after the source's own retries). The
  reindex keeps its previous chunks, records the error on the source's state, and goes on with the others.

A key the previous scan knew and a *complete* listing no longer yields is gone: the reindex deletes it from
the next generation. A scan whose listing itself failed (the folder is missing, the bucket answered 403)
raises instead, so nothing is deleted because of an outage.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from app.kb.store import SourceState


@dataclass(frozen=True)
class Fetched:
    key: str
    data: bytes
    state: SourceState


@dataclass(frozen=True)
class Unchanged:
    key: str
    state: SourceState


@dataclass(frozen=True)
class Failed:
    key: str
    error: str
    transient: bool  # worth retrying at the next reindex without any change to the definition


Outcome = Fetched | Unchanged | Failed


class Source(Protocol):
    """One configured source of a knowledge base (a folder with a glob, a list of URLs, a bucket prefix)."""

    def describe(self) -> str:
        """What it is, for logs and ``kb show`` (never a secret)."""
        ...

    def scan(self, known: Mapping[str, SourceState], http: httpx.AsyncClient) -> AsyncIterator[Outcome]:
        """Every document of the complete listing, as the module docstring says; ``known`` is the state the
        previous reindex stored, by key."""
        ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

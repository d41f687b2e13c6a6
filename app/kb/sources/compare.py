"""Whether a downloaded document changed, and the state a scan records for it (pure: ``now`` is passed in).

The content's sha256 is the truth: validators (ETag, Last-Modified) are often weak, missing, or new on every
request, so a document downloaded again with the same bytes is Unchanged and embeds nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from app.kb.sources.base import Fetched, Outcome, Unchanged, sha256
from app.kb.store import SourceState


def carried(previous: SourceState, etag: str | None, last_modified: str | None, now: datetime) -> SourceState:
    """The previous state, seen again now with these validators: it was read, so a previous error is cleared."""
    return dataclasses.replace(previous, etag=etag, last_modified=last_modified, last_seen_at=now, error=None)


def outcome_of_body(
    key: str,
    data: bytes,
    previous: SourceState | None,
    etag: str | None,
    last_modified: str | None,
    now: datetime,
) -> Outcome:
    """A downloaded document: Unchanged when its sha256 is the previous copy's (the validators were weak or
    missing), Fetched otherwise."""
    digest = sha256(data)
    if previous is not None and previous.sha256 == digest:
        return Unchanged(key, dataclasses.replace(carried(previous, etag, last_modified, now), size=len(data)))
    return Fetched(
        key,
        data,
        SourceState(key, etag=etag, last_modified=last_modified, sha256=digest, size=len(data), last_seen_at=now),
    )

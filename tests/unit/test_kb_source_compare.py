"""What a scan records for a downloaded document: the sha256 decides, the validators are kept for next time."""

from __future__ import annotations

from datetime import UTC, datetime

from app.kb.sources.base import Fetched, Unchanged, sha256
from app.kb.sources.compare import carried, outcome_of_body
from app.kb.store import SourceState

EARLIER = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEY = "https://wiki.example.com/a.md"


def test_a_new_document_is_fetched() -> None:
    outcome = outcome_of_body(KEY, b"alpha", None, '"e1"', "Sun, 01 Nov 2026 00:00:00 GMT", NOW)
    assert outcome == Fetched(
        KEY,
        b"alpha",
        SourceState(KEY, '"e1"', "Sun, 01 Nov 2026 00:00:00 GMT", sha256(b"alpha"), 5, last_seen_at=NOW),
    )


def test_the_same_bytes_under_new_validators_are_unchanged() -> None:
    previous = SourceState(KEY, '"e1"', None, sha256(b"alpha"), 5, EARLIER, skipped="no text", error="timed out")
    outcome = outcome_of_body(KEY, b"alpha", previous, '"e2"', None, NOW)
    assert outcome == Unchanged(
        KEY, SourceState(KEY, '"e2"', None, sha256(b"alpha"), 5, NOW, skipped="no text", error=None)
    )  # the skip reason still holds for the same bytes; the error is over: it was read


def test_other_bytes_are_fetched_and_start_afresh() -> None:
    previous = SourceState(KEY, '"e1"', None, sha256(b"alpha"), 5, EARLIER, skipped="no text")
    outcome = outcome_of_body(KEY, b"beta!", previous, '"e1"', None, NOW)
    assert isinstance(outcome, Fetched)
    assert outcome.state == SourceState(KEY, '"e1"', None, sha256(b"beta!"), 5, NOW)


def test_carried_keeps_the_content_and_takes_the_validators() -> None:
    previous = SourceState(KEY, '"e1"', "old date", "abc", 3, EARLIER, error="HTTP 503")
    assert carried(previous, '"e1"', "new date", NOW) == SourceState(KEY, '"e1"', "new date", "abc", 3, NOW)

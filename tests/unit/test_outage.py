"""Waiting out a database outage: outages are retried until the call succeeds, anything else is raised at once."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from app.db import outage
from app.db.outage import is_outage, wait_out


def test_outages_are_told_from_bugs() -> None:
    assert is_outage(ConnectionRefusedError(111, "refused"))
    assert is_outage(asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"))
    assert is_outage(asyncpg.exceptions.CannotConnectNowError("the database system is starting up"))
    assert is_outage(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle"))
    assert not is_outage(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not is_outage(ValueError("bad"))


def test_an_outage_is_waited_out_and_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(outage, "BACKOFF", lambda state: 0)  # no real waiting in a unit test
    failures = [ConnectionRefusedError(111, "refused"), asyncpg.exceptions.CannotConnectNowError("starting up")]

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "recorded"

    with caplog.at_level("INFO", logger="app.db.outage"):
        assert (
            wait_out(call, what="the end of a run", patience=timedelta(minutes=1), context={"run_id": 7}) == "recorded"
        )
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions == ["database_outage_wait", "database_outage_wait", "database_outage_over"]
    assert all(getattr(r, "run_id", None) == 7 for r in caplog.records)


def test_a_bug_is_raised_at_once() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise asyncpg.exceptions.UniqueViolationError("duplicate key")

    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        wait_out(call, what="the start of a run", patience=timedelta(minutes=1), context={})
    assert calls == [1]


def test_an_outage_longer_than_the_patience_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "BACKOFF", lambda state: 0)

    def call() -> None:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        wait_out(call, what="the start of a run", patience=timedelta(0), context={})

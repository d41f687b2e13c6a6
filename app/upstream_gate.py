"""A schedule with both a cron and ``after``: its cron decides *when* it fires, its upstreams decide *whether*.

At each of its cron instants ``T`` the tick looks at every upstream's latest run for an instant at or before
``T`` (a cron or dependency run that executed: ``missed`` and ``skipped`` instants never did):

    every one succeeded                       fire, with their outputs in ``upstream`` (as a dependency run gets
                                              them), so a 06:00 report reads the 02:00 load it follows
    one still in flight (scheduled, enqueued,  wait: the instant stays due and is looked at again on the next
    running, retrying)                        tick, for at most the schedule's ``catchup_window``
    one failed, timed out or was cancelled,   record the instant ``skipped``, naming the upstream, its run and
    one never ran, or the wait ran out        why, so the history says why nothing ran

A schedule with ``after`` and no cron runs for its upstreams' own instants instead (:mod:`app.dependencies`):
it fires when the last upstream of an instant succeeds, and never waits on a clock of its own.
Pure: the caller reads the upstream runs and passes ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

IN_FLIGHT = frozenset({"scheduled", "enqueued", "running", "retrying", "awaiting_approval"})


class Verdict(StrEnum):
    FIRE = "fire"
    WAIT = "wait"
    SKIP = "skip"


@dataclass(frozen=True)
class UpstreamRun:
    """An upstream schedule's latest run for an instant at or before the one gated (``run_id`` None: none)."""

    schedule: str
    run_id: int | None
    state: str | None
    output: Any = None


@dataclass(frozen=True)
class Gate:
    verdict: Verdict
    reason: str | None = None
    blocked_by: int | None = None
    upstream: dict[str, Any] = field(default_factory=dict)
    """The upstream outputs by schedule name, when it fires."""


def gate(upstreams: Sequence[UpstreamRun], *, instant: datetime, now: datetime, patience: timedelta) -> Gate:
    """The verdict for ``instant``; ``patience`` (the schedule's catchup window) bounds how long past the instant
    a run in flight is waited for."""
    waiting = None
    for up in upstreams:
        if up.run_id is None or up.state is None:
            return Gate(
                Verdict.SKIP, f'skipped: upstream "{up.schedule}" has no run at or before {instant:%Y-%m-%d %H:%M}'
            )
        if up.state in IN_FLIGHT:
            waiting = waiting or up
        elif up.state != "succeeded":
            return Gate(
                Verdict.SKIP,
                f'skipped: upstream "{up.schedule}" run {up.run_id} {up.state.replace("_", " ")}',
                blocked_by=up.run_id,
            )
    if waiting is not None:
        if now - instant <= patience:
            return Gate(Verdict.WAIT, blocked_by=waiting.run_id)
        return Gate(
            Verdict.SKIP,
            f'skipped: upstream "{waiting.schedule}" run {waiting.run_id} still {waiting.state} after waiting'
            f" {patience} (the schedule's catchup_window)",
            blocked_by=waiting.run_id,
        )
    return Gate(Verdict.FIRE, upstream={up.schedule: up.output for up in upstreams})

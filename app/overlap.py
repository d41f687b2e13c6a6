"""Overlap: which lease a run takes, decided from its message before it starts (pure).

A run of a schedule takes the lease ``schedule:<id>`` unless a lock key says otherwise: the schedule's
``lock_key``, else the actor's ``lock_key`` option. A lock key is a template over the run's keyword arguments
(``"reindex:{kb}"``), so two schedules re-indexing one knowledge base never run together. Policies:

- ``skip`` (default): a run that finds the lease held is recorded ``skipped`` with the holder's id;
- ``queue``: at most one run waits for the lease and starts when it frees; a further one is skipped;
- ``allow``: no lease at all.

The lease itself lives in PostgreSQL (``run_locks``), taken by ``punchclock_start_run`` and renewed by the
worker's heartbeat; a dead worker's lease expires after ``lock_ttl``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.choices import parse_choice
from app.errors import InvalidInput


class Overlap(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


def parse_overlap(text: str) -> Overlap:
    return parse_choice(Overlap, text, "overlap policy")


@dataclass(frozen=True)
class Lease:
    """The lease a run must hold to start (``key`` None: none) and what to do when another run holds it."""

    key: str | None
    policy: Overlap


def validate_lock_key(template: str) -> str:
    """A lock key template: text with ``{name}`` fields naming the run's keyword arguments."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InvalidInput(
            f'invalid lock_key "{template}": {exc}; write fields as {{name}}, e.g. "reindex:{{kb}}"'
        ) from None
    for name in fields:
        if not name.isidentifier():
            raise InvalidInput(
                f'invalid lock_key "{template}": field "{{{name}}}" must name a keyword argument, e.g. "reindex:{{kb}}"'
            )
    if not template.strip():
        raise InvalidInput("invalid lock_key: empty; leave it unset to lock per schedule")
    return template


def resolve_lease(options: Mapping[str, Any], actor_lock_key: str | None, kwargs: Mapping[str, Any]) -> Lease:
    """The lease of a run from its message options (frozen from its schedule), its actor's ``lock_key``
    option and its keyword arguments. A run without a schedule and without a lock key takes none.

    Raises :class:`InvalidInput` when the lock key names an argument the run does not have.
    """
    schedule_id = options.get("schedule_id")
    policy = Overlap(options.get("overlap") or (Overlap.SKIP if schedule_id is not None else Overlap.ALLOW))
    if policy is Overlap.ALLOW:
        return Lease(None, policy)
    template = options.get("lock_key") or actor_lock_key
    if template:
        try:
            return Lease(template.format_map(kwargs), policy)
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInput(
                f'lock_key "{template}" cannot be filled from the run\'s arguments {sorted(kwargs)}: missing {exc}'
            ) from None
    if schedule_id is None:
        return Lease(None, Overlap.ALLOW)
    return Lease(f"schedule:{schedule_id}", policy)

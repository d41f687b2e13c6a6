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


# A template is a prefix and the fields that identify a resource; the key it fills is a primary key in
# run_locks, and a B-tree index entry holds at most about 2,700 bytes (512 characters of UTF-8 fit).
MAX_TEMPLATE_LENGTH = 200
MAX_KEY_LENGTH = 512
_HOW = 'write plain {name} fields naming keyword arguments, like "reindex:{kb}"'


def validate_lock_key(template: str) -> str:
    """A lock key template: text with ``{name}`` fields, each the name of one of the run's keyword arguments.

    Nothing else ``str.format`` understands is let through: a format spec (``{kb:>20000000}``) pads the key to
    any length, and attribute or index access (``{kb.x}``, ``{kb[0]}``), conversions (``{kb!r}``) and dunder
    names (``{__class__}``) reach into the argument objects, while a key needs only the arguments' values.
    """
    if not template.strip():
        raise InvalidInput("invalid lock_key: empty; leave it unset to lock per schedule")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise InvalidInput(
            f'invalid lock_key "{template[:40]}…": {len(template):,} characters, more than {MAX_TEMPLATE_LENGTH};'
            f" {_HOW}"
        )
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        raise InvalidInput(f'invalid lock_key "{template}": {exc}; {_HOW}') from None
    for name, spec, conversion in fields:
        if name is None:
            continue
        field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if conversion:
            problem = "has a conversion"
        elif spec:
            problem = "has a format spec"
        elif not name.isidentifier():
            problem = "is not the name of a keyword argument (no positions, attributes or indexes)"
        elif name.startswith("__") and name.endswith("__"):
            problem = "is a dunder name, not an argument"
        else:
            continue
        raise InvalidInput(f'invalid lock_key "{template}": field "{field}" {problem}; {_HOW}')
    return template


def lock_key_fields(template: str) -> list[str]:
    """The argument names a valid template (see :func:`validate_lock_key`) reads, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def missing_lock_key_fields(template: str, args: Mapping[str, Any]) -> list[str]:
    """The fields of ``template`` that ``args`` lack. The lease is filled from the run's own arguments before
    the actor is called, so a parameter's default value never fills a field: the args must name it."""
    return [name for name in lock_key_fields(template) if name not in args]


def fill_lock_key(template: str, kwargs: Mapping[str, Any]) -> str:
    """The key ``template`` names for a run with keyword arguments ``kwargs``.

    The template is checked again here: an actor's ``lock_key`` option, or a run recorded before templates
    were checked, never went through :func:`validate_lock_key`. The key's length is bounded too, since an
    argument's value (a whole document) can make it as long as it likes.
    """
    validate_lock_key(template)
    try:
        key = template.format_map(kwargs)
    except KeyError as exc:
        raise InvalidInput(
            f'lock_key "{template}" cannot be filled from the run\'s arguments {sorted(kwargs)}: missing {exc}'
        ) from None
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f'lock_key "{template}" filled from the run\'s arguments is {len(key):,} characters long, more than'
            f' {MAX_KEY_LENGTH}: name short arguments in it (an id rather than a document), like "reindex:{{kb}}"'
        )
    return key


def resolve_lease(options: Mapping[str, Any], actor_lock_key: str | None, kwargs: Mapping[str, Any]) -> Lease:
    """The lease of a run from its message options (frozen from its schedule), its actor's ``lock_key``
    option and its keyword arguments. A run without a schedule and without a lock key takes none.

    Raises :class:`InvalidInput` when the lock key is not a valid template, names an argument the run does not
    have, or comes out longer than :data:`MAX_KEY_LENGTH`.
    """
    schedule_id = options.get("schedule_id")
    policy = Overlap(options.get("overlap") or (Overlap.SKIP if schedule_id is not None else Overlap.ALLOW))
    if policy is Overlap.ALLOW:
        return Lease(None, policy)
    template = options.get("lock_key") or actor_lock_key
    if template:
        return Lease(fill_lock_key(template, kwargs), policy)
    if schedule_id is None:
        return Lease(None, Overlap.ALLOW)
    return Lease(f"schedule:{schedule_id}", policy)

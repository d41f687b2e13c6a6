"""The life of a knowledge base's generations, as pure rules: which may become active, which a rollback goes
back to, which are dropped. ``app/kb/store.py`` applies them under the knowledge base's row lock.

::

    building ─▶ ready ─▶ active ─▶ retired ─▶ dropped        rollback: retired ─▶ active
       └──────▶ failed (its chunks dropped later; the row, with its error and gate results, kept)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.errors import InvalidInput


class GenerationState(StrEnum):
    BUILDING = "building"
    READY = "ready"
    ACTIVE = "active"
    RETIRED = "retired"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class GenerationRef:
    """What the rules need of a generation."""

    id: int
    kb: str
    number: int
    state: GenerationState
    dropped: bool = False

    def label(self) -> str:
        return f'generation {self.number} of knowledge base "{self.kb}"'


def activation_problem(generation: GenerationRef) -> str | None:
    """Why ``generation`` cannot become active (None: it can). Already active is no problem (nothing to do)."""
    state = generation.state
    if state in (GenerationState.READY, GenerationState.RETIRED, GenerationState.ACTIVE) and not generation.dropped:
        return None
    if state is GenerationState.BUILDING:
        return f"{generation.label()} is still building: it becomes active once it is ready (its gate passed)"
    if state is GenerationState.FAILED:
        return f"{generation.label()} failed its build or its gate: it cannot become active"
    return f"{generation.label()} was dropped (its chunks are gone): it cannot become active; reindex instead"


def rollback_target(kb: str, generations: Sequence[GenerationRef], number: int | None) -> GenerationRef:
    """The generation ``kb rollback KB [NUMBER]`` activates: generation ``number``, or, without one, the newest
    retired generation older than the active one (the one before it)."""
    active = next((g for g in generations if g.state is GenerationState.ACTIVE), None)
    if number is None:
        older = [
            g
            for g in generations
            if g.state is GenerationState.RETIRED and not g.dropped and (active is None or g.number < active.number)
        ]
        if not older:
            raise InvalidInput(
                f'knowledge base "{kb}" has no retired generation'
                + (f" older than its active generation {active.number}" if active else "")
                + " to roll back to: see its generations, and name one to activate"
            )
        return max(older, key=lambda g: g.number)
    target = next((g for g in generations if g.number == number), None)
    if target is None:
        known = ", ".join(str(g.number) for g in generations) or "none yet"
        raise InvalidInput(f'knowledge base "{kb}" has no generation {number} (it has: {known})')
    if target.state is GenerationState.ACTIVE:
        raise InvalidInput(f"{target.label()} is already active")
    problem = activation_problem(target)
    if problem:
        raise InvalidInput(problem)
    return target


def generations_to_drop(generations: Sequence[GenerationRef], keep: int) -> list[GenerationRef]:
    """The generations whose chunks go: keep the active one and the newest others that could be activated
    (ready, retired), ``keep`` in all; failed ones go at once. Building ones stay (a build may be running)."""
    if keep < 1:
        raise InvalidInput(f"keep_generations must be at least 1 (the active generation), not {keep}")
    live = [g for g in generations if not g.dropped]
    active = [g for g in live if g.state is GenerationState.ACTIVE]
    standby = sorted(
        (g for g in live if g.state in (GenerationState.READY, GenerationState.RETIRED)),
        key=lambda g: g.number,
        reverse=True,
    )
    kept = {g.id for g in active} | {g.id for g in standby[: max(keep - len(active), 0)]}
    failed = [g for g in live if g.state is GenerationState.FAILED]
    return sorted([g for g in standby if g.id not in kept] + failed, key=lambda g: g.number)

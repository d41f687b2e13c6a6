"""The pure rules of a knowledge base's generations (app/kb/lifecycle.py) and pgvector's text form
(app/kb/vectors.py)."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.kb.lifecycle import GenerationRef, GenerationState, activation_problem, generations_to_drop, rollback_target
from app.kb.vectors import from_text, to_text

S = GenerationState


def gens(*states: GenerationState, dropped: tuple[int, ...] = ()) -> list[GenerationRef]:
    return [GenerationRef(100 + n, "docs", n, state, n in dropped) for n, state in enumerate(states, start=1)]


def test_only_ready_retired_or_active_generations_may_become_active() -> None:
    ready, retired, active, building, failed, dropped = gens(
        S.READY, S.RETIRED, S.ACTIVE, S.BUILDING, S.FAILED, S.DROPPED
    )
    assert [activation_problem(g) for g in (ready, retired, active)] == [None, None, None]
    assert "still building" in (activation_problem(building) or "")
    assert "failed" in (activation_problem(failed) or "")
    assert "was dropped" in (activation_problem(dropped) or "")


def test_rollback_goes_to_the_newest_retired_generation_older_than_the_active_one() -> None:
    history = gens(S.DROPPED, S.RETIRED, S.RETIRED, S.ACTIVE, S.RETIRED, dropped=(1,))
    assert rollback_target("docs", history, None).number == 3
    assert rollback_target("docs", history, 5).number == 5
    with pytest.raises(InvalidInput, match=r"generation 4 .* is already active"):
        rollback_target("docs", history, 4)
    with pytest.raises(InvalidInput, match=r"generation 1 .* was dropped"):
        rollback_target("docs", history, 1)
    with pytest.raises(InvalidInput, match=r"no generation 7 \(it has: 1, 2, 3, 4, 5\)"):
        rollback_target("docs", history, 7)
    with pytest.raises(InvalidInput, match="no retired generation older than its active generation 1"):
        rollback_target("docs", gens(S.ACTIVE, S.RETIRED), None)
    assert rollback_target("docs", gens(S.RETIRED, S.RETIRED), None).number == 2  # none active: the newest


def test_drop_keeps_the_active_and_the_newest_standby_generations() -> None:
    history = gens(S.RETIRED, S.ACTIVE, S.RETIRED, S.FAILED, S.READY, S.BUILDING, S.DROPPED, dropped=(7,))
    assert [g.number for g in generations_to_drop(history, 1)] == [1, 3, 4, 5]
    assert [g.number for g in generations_to_drop(history, 2)] == [1, 3, 4]
    assert [g.number for g in generations_to_drop(history, 10)] == [4]
    # without an active generation, keep counts the newest standby ones
    assert [g.number for g in generations_to_drop(gens(S.READY, S.READY, S.READY), 2)] == [1]
    with pytest.raises(InvalidInput, match="at least 1"):
        generations_to_drop(history, 0)


def test_vectors_travel_as_pgvector_text_and_bad_ones_are_named() -> None:
    assert to_text([1, 0.5, -2e-05], "q") == "[1.0,0.5,-2e-05]"
    assert from_text("[1,0.5,-2e-05]") == (1.0, 0.5, -2e-05)
    with pytest.raises(InvalidInput, match="q has 2 dimensions, expected 3"):
        to_text([1, 2], "q", 3)
    with pytest.raises(InvalidInput, match="q holds inf at index 1"):
        to_text([1, float("inf")], "q")
    with pytest.raises(InvalidInput, match="q is all zeros"):
        to_text([0, 0], "q")
    with pytest.raises(InvalidInput, match="q: 0 dimensions"):
        to_text([], "q")

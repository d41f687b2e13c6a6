"""How a reindex scans, from the knowledge base's generations alone (app/kb/reindex.py plan_scan; pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.kb.lifecycle import GenerationState
from app.kb.reindex import plan_scan
from app.kb.store import Generation, GenerationCounts

T = datetime(2026, 11, 30, tzinfo=UTC)
LEXICAL = "lexical-v1-384"


def generation(number: int, state: GenerationState, *, embedder: str = LEXICAL, was_active: bool = False) -> Generation:
    activated = state in (GenerationState.ACTIVE, GenerationState.RETIRED) or was_active
    return Generation(
        id=number,
        kb="docs",
        number=number,
        state=state,
        embedder_id=embedder,
        dims=384,
        counts=GenerationCounts(),
        gate_scores=None,
        gate_results=None,
        error=None,
        run_id=None,
        started_at=T,
        finished_at=T,
        activated_at=T if activated else None,
        dropped_at=None,
    )


def test_an_active_generation_of_the_same_embedder_is_scanned_incrementally() -> None:
    plan = plan_scan([generation(1, GenerationState.RETIRED), generation(2, GenerationState.ACTIVE)], LEXICAL)

    assert (plan.rescan, plan.can_carry, plan.embedder_changed, plan.rolled_back) == (False, True, False, False)
    assert plan.active is not None and plan.active.number == 2


def test_a_failed_generation_after_the_active_one_changes_nothing() -> None:
    plan = plan_scan([generation(1, GenerationState.ACTIVE), generation(2, GenerationState.FAILED)], LEXICAL)

    assert not plan.rescan and not plan.rolled_back


def test_no_active_generation_reads_everything() -> None:
    assert plan_scan([], LEXICAL).rescan
    assert plan_scan([generation(1, GenerationState.FAILED)], LEXICAL).rescan


def test_another_embedder_reads_everything_and_carries_nothing() -> None:
    plan = plan_scan([generation(1, GenerationState.ACTIVE)], "openai:api.openai.com:text-embedding-3-small")

    assert (plan.rescan, plan.can_carry, plan.embedder_changed) == (True, False, True)


def test_after_a_rollback_everything_is_read_again_but_may_be_carried() -> None:
    plan = plan_scan([generation(1, GenerationState.ACTIVE), generation(2, GenerationState.RETIRED)], LEXICAL)

    assert (plan.rescan, plan.can_carry, plan.rolled_back) == (True, True, True)
    # a newer one dropped since still counts: the states were written with it
    dropped = generation(2, GenerationState.DROPPED, was_active=True)
    assert plan_scan([generation(1, GenerationState.ACTIVE), dropped], LEXICAL).rolled_back


def test_full_reads_everything() -> None:
    assert plan_scan([generation(1, GenerationState.ACTIVE)], LEXICAL, full=True).rescan

"""A workflow searches only the knowledge bases it names: ``uses={"kb"}`` and ``kbs={...}``, checked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.errors import InvalidInput
from app.kb.store import Hit
from app.workflows.context import RunInfo, WorkflowContext
from app.workflows.definition import ScopeError, Workflow, workflow
from app.workflows.memory import Memory
from app.workflows.steps import Steps, Tally


async def body(ctx: WorkflowContext) -> None:
    return None


def context(flow: Workflow, searched: list[tuple[str, str, int]]) -> WorkflowContext:
    async def search(name: str, query: str, k: int) -> list[Hit]:
        searched.append((name, query, k))
        return [Hit("Refunds take ten days.", "billing.md", 0.9, "c1", 1, {})]

    tally = Tally()
    run = RunInfo(None, None, datetime(2026, 11, 30, tzinfo=UTC), "UTC", "manual", 1)
    db: Any = None  # no run id: nothing is written
    return WorkflowContext(
        flow,
        params={},
        run=run,
        llm=lambda: None,
        dify=lambda: None,  # type: ignore[arg-type,return-value]
        http=None,  # type: ignore[arg-type]
        memory=Memory(db, flow.name, None),
        steps=Steps(db, None, 1, tally),
        tally=tally,
        kb=search,
    )


async def test_a_declared_knowledge_base_is_searched_as_a_step() -> None:
    flow = workflow("answer", uses={"kb"}, kbs={"policies"})(body)
    searched: list[tuple[str, str, int]] = []
    hits = await context(flow, searched).kb("policies").search("refund", k=3)
    assert searched == [("policies", "refund", 3)]
    assert [(h.source, h.score) for h in hits] == [("billing.md", 0.9)]


def test_an_undeclared_knowledge_base_raises_scope_error() -> None:
    flow = workflow("answer", uses={"kb"}, kbs={"policies"})(body)
    with pytest.raises(ScopeError, match='did not declare knowledge base "hr": add it to @workflow'):
        context(flow, []).kb("hr")


def test_without_kb_in_uses_raises_scope_error() -> None:
    flow = workflow("answer", uses={"http"})(body)
    with pytest.raises(ScopeError, match='did not declare "kb"'):
        context(flow, []).kb("policies")


@pytest.mark.parametrize(
    ("uses", "kbs", "message"),
    [
        ({"kb"}, (), 'uses "kb" but names no knowledge base'),
        ({"http"}, {"policies"}, 'add "kb" to uses too'),
        ({"kb"}, "policies", 'kbs="policies" is one string'),
    ],
)
def test_the_declaration_is_checked(uses: set[str], kbs: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        workflow("answer", uses=uses, kbs=kbs)

"""Running a workflow for a run: load the run's facts, build the context, await the workflow, add the tokens
it spent to the run. The run's output is what the workflow returns (RunLifecycle records it)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from dramatiq.asyncio import get_event_loop_thread

from app.db.queries import sql
from app.errors import ConfigurationError
from app.workflows.context import KbSearch, RunInfo, WorkflowContext, no_kb_search
from app.workflows.definition import Workflow
from app.workflows.memory import Memory
from app.workflows.steps import Steps, Tally

if TYPE_CHECKING:
    from app.ai.dify import DifyClient
    from app.db.pool import Pool

T = TypeVar("T")


async def execute(
    flow: Workflow,
    params: Mapping[str, Any],
    *,
    run_id: int | None,
    attempt: int,
    pool: Pool,
    http: httpx.AsyncClient,
    llm: Callable[[], Any],
    dify: Callable[[], DifyClient],
    kb: KbSearch = no_kb_search,
) -> Any:
    params = dict(params)
    upstream = params.pop("upstream", {})
    row = await pool.fetchrow(sql("workflow_run_info"), run_id) if run_id is not None else None
    run = RunInfo(
        run_id=run_id,
        schedule=row["schedule_name"] if row else None,
        scheduled_for=row["scheduled_for"] if row else datetime.now(UTC),
        timezone=row["timezone"] if row else "UTC",
        trigger=row["trigger"] if row else "manual",
        attempt=attempt,
        upstream=upstream,
    )
    tally = Tally()
    ctx = WorkflowContext(
        flow,
        params=params,
        run=run,
        llm=llm,
        dify=dify,
        http=http,
        memory=Memory(pool, flow.name, run_id),
        steps=Steps(pool, run_id, attempt, tally),
        tally=tally,
        kb=kb,
    )
    try:
        return await flow.fn(ctx)
    finally:
        if run_id is not None and tally.total.total_tokens:
            await pool.execute(sql("add_run_tokens"), run_id, tally.total.input_tokens, tally.total.output_tokens)


def run_on_loop(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` on Dramatiq's event loop thread (where the pool and HTTP client live) from a worker
    thread, carrying this thread's context variables (the current span, so the workflow's spans are children
    of its run's). Dramatiq's own async actors would start from the loop thread's context instead."""
    thread = get_event_loop_thread()
    if thread is None:
        raise ConfigurationError("workflows need Dramatiq's AsyncIO middleware in the stack")
    context = contextvars.copy_context()

    async def in_context() -> T:
        return await asyncio.get_running_loop().create_task(_awaited(work), context=context)

    return thread.run_coroutine(in_context())


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()

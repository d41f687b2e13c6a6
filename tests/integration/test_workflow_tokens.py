"""Tokens a workflow spends reach its steps and its run: the ``dify`` workflow against the loopback Dify Service API
(tests/fakes/dify_server.py), on the real PostgreSQL, through the runner the ``run_workflow`` actor uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from tenacity import wait_none

from app.ai.dify import DifyApp, DifyClient, DifyWorkflowFailed
from app.workflows.builtin import dify as dify_workflow
from app.workflows.runner import execute
from tests.fakes.dify_server import Fail, FakeDify, Succeed

KEY = "app-tokens-test-key-0123"


@pytest.fixture
def fake_dify() -> Iterator[FakeDify]:
    with FakeDify(key=KEY) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def run_dify(pool: asyncpg.Pool[Any], http: httpx.AsyncClient, server: FakeDify) -> int:
    """Run the ``dify`` workflow for a new run row, as the worker would; the run's id."""
    run_id: int = await pool.fetchval(
        "INSERT INTO runs (schedule_name, actor, scheduled_for, trigger, state)"
        " VALUES ('weather-beijing', 'dify', now(), 'manual', 'running') RETURNING id"
    )
    client = DifyClient(
        http, {"weather": DifyApp("weather", server.base_url, "KEY")}, {"KEY": KEY}, backoff=wait_none()
    )

    def no_llm() -> Any:
        raise AssertionError("the dify workflow declares no llm")

    await execute(
        dify_workflow,
        {"app": "weather", "inputs": {"city": "Beijing"}},
        run_id=run_id,
        attempt=1,
        pool=pool,
        http=http,
        llm=no_llm,
        dify=lambda: client,
    )
    return run_id


async def tokens(pool: asyncpg.Pool[Any], run_id: int) -> tuple[tuple[int, int], list[tuple[str, int, int]]]:
    run = await pool.fetchrow("SELECT input_tokens, output_tokens FROM runs WHERE id = $1", run_id)
    steps = await pool.fetch("SELECT name, input_tokens, output_tokens FROM run_steps WHERE run_id = $1", run_id)
    return (run["input_tokens"], run["output_tokens"]), [tuple(step) for step in steps]


async def test_a_dify_run_counts_its_total_tokens_on_the_step_and_the_run(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake_dify: FakeDify
) -> None:
    fake_dify.script(Succeed(total_tokens=77))
    run_id = await run_dify(pool, http, fake_dify)
    # Dify reports a total only: input stays 0, the total is counted as output, so in + out is the total
    assert await tokens(pool, run_id) == ((0, 77), [("dify weather", 0, 77)])


async def test_a_failed_dify_run_counts_what_it_spent(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, fake_dify: FakeDify
) -> None:
    fake_dify.script(Fail(error="quota exceeded", total_tokens=7))
    with pytest.raises(DifyWorkflowFailed):
        await run_dify(pool, http, fake_dify)
    (run_id,) = [row["id"] for row in await pool.fetch("SELECT id FROM runs")]
    assert await tokens(pool, run_id) == ((0, 7), [("dify weather", 0, 7)])

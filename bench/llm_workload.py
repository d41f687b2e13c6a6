"""The worker side of ``bench/llm_concurrency.py``: one bench-only actor loaded next to the real stack, run as

    dramatiq app.actors bench.llm_workload --processes 1 --threads 8

``llm_fanout(calls, concurrency)`` makes ``calls`` chat calls through the worker's own wiring (the shared
``httpx.AsyncClient``, ``LLMConfig`` from the environment, the real :class:`app.ai.llm.LLM` with its retries and
spans), fanned out with ``asyncio.gather`` under an ``asyncio.Semaphore(concurrency)`` on Dramatiq's event loop
(:func:`app.workflows.runner.run_on_loop`): one worker thread, up to ``concurrency`` calls in flight. It returns
and logs (at WARNING, on the ``bench.llm_workload`` logger, one line the bench reads back from the worker's log)
``ok``, ``failed`` and ``elapsed``.

Import order matters: ``app.actors`` first (Dramatiq's CLI imports it first), so the actor lands on its broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import dramatiq

import app.actors as wiring
from app.ai.llm import LLM
from app.workflows.runner import run_on_loop

ACTOR, QUEUE = "llm_fanout", "bench_llm"  # what bench/llm_concurrency.py sends to
DONE = "llm_fanout done"  # the start of the log line bench/llm_concurrency.py looks for

logger = logging.getLogger(__name__)


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, max_retries=0, time_limit=600_000)
def llm_fanout(calls: int, concurrency: int) -> dict[str, Any]:
    """``calls`` chat completions, at most ``concurrency`` at a time, inside this one message."""
    result = run_on_loop(lambda: _fan_out(calls, concurrency))
    logger.warning(
        f"{DONE} ok={result['ok']} failed={result['failed']} elapsed={result['elapsed']:.3f}"
        + (f" errors={result['errors']}" if result["errors"] else "")
    )
    return result


async def _fan_out(calls: int, concurrency: int) -> dict[str, Any]:
    llm = LLM(wiring.http.client, wiring.llm_config, tracer_provider=wiring.tracer_provider)
    gate = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()

    async def one(i: int) -> bool:
        async with gate:
            try:
                await llm.chat(f"bench call {i}", max_tokens=8)
            except Exception as exc:  # counted, not raised: one failure must not cancel the rest
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                return False
            return True

    started = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(calls)))
    elapsed = time.perf_counter() - started
    ok = sum(done)
    return {"ok": ok, "failed": calls - ok, "elapsed": elapsed, "errors": dict(errors.most_common(3))}

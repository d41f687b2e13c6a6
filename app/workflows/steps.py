"""Steps: ``async with ctx.step("fetch"):`` makes a span ``step fetch`` and a recorded step (name, timings,
status, tokens spent inside it). Tokens of LLM calls go to the innermost open step and to the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from app.ai.usage import Usage
from app.db.queries import sql

if TYPE_CHECKING:
    from app.db.pool import Executor

tracer = trace.get_tracer("punchclock.workflow")


@dataclass
class Tally:
    """Tokens spent by the run (``total``) and by each open step (a stack, innermost last)."""

    total: Usage = field(default_factory=Usage)
    open_steps: list[Usage] = field(default_factory=list)

    def add(self, usage: Usage) -> None:
        self.total += usage
        if self.open_steps:
            self.open_steps[-1] += usage


class Steps:
    def __init__(self, db: Executor, run_id: int | None, attempt: int, tally: Tally) -> None:
        self._db = db
        self._run_id = run_id
        self._attempt = attempt
        self._tally = tally
        self._seq = 0

    @asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[None]:
        self._seq += 1
        seq = self._seq
        started = datetime.now(UTC)
        self._tally.open_steps.append(Usage())
        status, error = "ok", None
        with tracer.start_as_current_span(f"step {name}", attributes={"punchclock.step": name}) as span:
            try:
                yield
            except BaseException as exc:
                status, error = "error", f"{type(exc).__name__}: {exc}"
                span.set_status(Status(StatusCode.ERROR, error))
                raise
            finally:
                used = self._tally.open_steps.pop()
                span.set_attribute("gen_ai.usage.input_tokens", used.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", used.output_tokens)
                if self._run_id is not None:
                    await self._db.execute(
                        sql("insert_run_step"),
                        self._run_id,
                        self._attempt,
                        seq,
                        name,
                        started,
                        datetime.now(UTC),
                        status,
                        error,
                        used.input_tokens,
                        used.output_tokens,
                    )

"""Steps: ``async with ctx.step("fetch"):`` makes a span ``step fetch`` and a recorded step (name, timings,
status, tokens spent inside it). Tokens of LLM and Dify calls go to the innermost open step and to the run.

An exception leaving a step is stored in ``run_steps.error`` and recorded on the span redacted
(:func:`app.redaction.redact`): a failed request names its URL, token and all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry import trace

from app.ai.usage import Usage
from app.db.queries import sql
from app.redaction import redact
from app.tracing import record_error

if TYPE_CHECKING:
    from app.db.pool import Executor

TRACER_NAME = "punchclock.workflow"


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
        # the tracer of the global provider as it is now: a module-level proxy would bind to the first one for good
        with trace.get_tracer(TRACER_NAME).start_as_current_span(
            f"step {name}",
            attributes={"punchclock.step": name},
            record_exception=False,  # record_error does, redacted
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except BaseException as exc:
                status, error = "error", redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                record_error(span, exc)
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

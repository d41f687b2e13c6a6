"""What a workflow sees: its params, its run, and the capabilities it declared (``llm``, ``dify``, ``http``,
``memory``, ``kb``), plus ``step(name)``. A capability it did not declare raises :class:`ScopeError`; an LLM that is
not configured raises :class:`~app.errors.ConfigurationError` naming the variables to set, when first used."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import httpx

from app.ai.dify import DifyWorkflowFailed
from app.ai.usage import Usage
from app.errors import ConfigurationError
from app.workflows.definition import ScopeError, Workflow
from app.workflows.memory import Memory
from app.workflows.steps import Steps, Tally

if TYPE_CHECKING:
    from app.ai.dify import DifyClient
    from app.kb.store import Hit

# (knowledge base, query, k) → the k nearest chunks of its active generation (app/kb/service.py, search_kb)
KbSearch = Callable[[str, str, int], Awaitable[list["Hit"]]]


@dataclass(frozen=True)
class RunInfo:
    """The run a workflow executes: ``scheduled_for`` is the cron instant (UTC); ``local`` is it in the
    schedule's zone. ``upstream`` holds the outputs of the schedules this one runs after."""

    run_id: int | None
    schedule: str | None
    scheduled_for: datetime
    timezone: str
    trigger: str
    attempt: int
    upstream: Mapping[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> datetime:
        return self.scheduled_for.astimezone(ZoneInfo(self.timezone))


class _Billed(Protocol):
    usage: Usage


class TrackedLLM:
    """The LLM client, adding every call's token usage to the current step and the run."""

    def __init__(self, client: Any, tally: Tally) -> None:
        self._client = client
        self._tally = tally

    async def chat(self, messages: list[dict[str, Any]], **options: Any) -> Any:
        result = await self._client.chat(messages, **options)
        self._tally.add(result.usage)
        return result

    async def embed(self, texts: list[str], **options: Any) -> Any:
        result = await self._client.embed(texts, **options)
        self._tally.add(result.usage)
        return result


class ScheduleDify:
    """Dify for one workflow run: ``await ctx.dify.run("weather", {"city": "Beijing"})``, with ``user`` set to
    the schedule's name (Dify groups a workflow's runs by user). Each run's ``total_tokens`` goes to the current
    step and the run like an LLM call's usage (:meth:`Usage.from_total`: Dify reports no input/output split),
    a workflow run that ended ``failed`` included."""

    def __init__(self, client: DifyClient, user: str, tally: Tally) -> None:
        self._client = client
        self._user = user
        self._tally = tally

    async def run(self, app: str, inputs: Mapping[str, Any]) -> Any:
        try:
            result = await self._client.run_workflow(app, dict(inputs), user=self._user)
        except DifyWorkflowFailed as failed:
            self._tally.add(Usage.from_total(failed.total_tokens))
            raise
        self._tally.add(Usage.from_total(result.total_tokens))
        return result


class KnowledgeBaseReader:
    """One knowledge base a workflow declared: ``await ctx.kb("policies").search("refunds", k=5)`` → hits with
    ``text``, ``source``, ``score`` (cosine similarity), nearest first. Each search is a recorded step and span
    ``kb policies``: the query's cost and failure show in ``runs show`` like any step's."""

    def __init__(self, name: str, search: KbSearch, steps: Steps) -> None:
        self.name = name
        self._search = search
        self._steps = steps

    async def search(self, query: str, k: int = 5) -> list[Hit]:
        async with self._steps(f"kb {self.name}"):
            return await self._search(self.name, query, k)


async def no_kb_search(name: str, query: str, k: int) -> list[Hit]:
    raise ConfigurationError("knowledge base search is not wired in this process: run the workflow from app.actors")


class WorkflowContext:
    def __init__(
        self,
        flow: Workflow,
        *,
        params: Mapping[str, Any],
        run: RunInfo,
        llm: Callable[[], Any],
        dify: Callable[[], DifyClient],
        http: httpx.AsyncClient,
        memory: Memory,
        steps: Steps,
        tally: Tally,
        kb: KbSearch = no_kb_search,
    ) -> None:
        self.workflow = flow
        self.params = params
        self.run = run
        self.step = steps
        self.tally = tally
        self._llm = llm
        self._dify = dify
        self._http = http
        self._memory = memory
        self._kb = kb

    def _require(self, capability: str) -> None:
        if capability not in self.workflow.uses:
            raise ScopeError(
                f'workflow "{self.workflow.name}" did not declare "{capability}": add it to '
                f"@workflow(..., uses={{...}}) (declared: {sorted(self.workflow.uses) or 'nothing'})"
            )

    @property
    def llm(self) -> TrackedLLM:
        self._require("llm")
        return TrackedLLM(self._llm(), self.tally)

    @property
    def dify(self) -> ScheduleDify:
        self._require("dify")
        return ScheduleDify(self._dify(), self.run.schedule or self.workflow.name, self.tally)

    @property
    def http(self) -> httpx.AsyncClient:
        self._require("http")
        return self._http

    @property
    def memory(self) -> Memory:
        self._require("memory")
        return self._memory

    def kb(self, name: str) -> KnowledgeBaseReader:
        """The knowledge base ``name``, which the workflow must name in ``@workflow(..., kbs={...})``."""
        self._require("kb")
        if name not in self.workflow.kbs:
            raise ScopeError(
                f'workflow "{self.workflow.name}" did not declare knowledge base "{name}": add it to'
                f" @workflow(..., kbs={{...}}) (declared: {sorted(self.workflow.kbs)})"
            )
        return KnowledgeBaseReader(name, self._kb, self.step)

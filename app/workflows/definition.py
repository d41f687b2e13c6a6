"""Declaring a workflow: a name, what it may touch, and an ``async def`` over its context.

::

    @workflow("daily_brief", uses={"http", "llm", "memory"})
    async def daily_brief(ctx: WorkflowContext) -> dict[str, Any]:
        async with ctx.step("fetch"):
            data = (await ctx.http.get(ctx.params["source"])).json()
        ...

The decorator registers nothing: ``app/actors.py`` finds the workflows among the names of the modules under
``actors/`` (``app/discovery.py``) and hands them to the ``run_workflow`` actor, so the wiring stays in one
place. A workflow reaching for something it did not declare in ``uses`` fails with :class:`ScopeError`.

Knowledge bases are named one by one: ``@workflow("answer", uses={"kb"}, kbs={"policies"})`` may search
``policies`` (``await ctx.kb("policies").search(question, k=5)``) and no other. ``uses`` stays a set of
capabilities; which knowledge bases is a second, explicit list, so reading one more is a visible change.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.errors import InvalidInput
from app.transient import PermanentError

if TYPE_CHECKING:
    from app.workflows.context import WorkflowContext

CAPABILITIES = frozenset({"llm", "dify", "http", "memory", "kb"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

WorkflowFn = Callable[["WorkflowContext"], Awaitable[Any]]


class ScopeError(PermanentError):
    """A workflow used a capability it did not declare: a programming error, never retried."""


@dataclass(frozen=True)
class Workflow:
    name: str
    uses: frozenset[str]
    fn: WorkflowFn
    description: str = ""
    kbs: frozenset[str] = frozenset()  # the knowledge bases it may search (with "kb" in uses)


def workflow(name: str, *, uses: Iterable[str] = (), kbs: Iterable[str] = ()) -> Callable[[WorkflowFn], Workflow]:
    """Declare ``fn`` as the workflow ``name`` that may use the capabilities in ``uses`` and search the knowledge
    bases in ``kbs``."""
    if not _NAME.match(name):
        raise InvalidInput(f'invalid workflow name "{name}": use lowercase letters, digits and "_"')
    declared = frozenset(uses)
    unknown = declared - CAPABILITIES
    if unknown:
        raise InvalidInput(
            f'workflow "{name}" declares unknown capabilities {sorted(unknown)}: use some of {sorted(CAPABILITIES)}'
        )
    if isinstance(kbs, str):  # a lone name is a sequence of characters: never what the author meant
        raise InvalidInput(f'workflow "{name}": kbs="{kbs}" is one string; use a set of names, kbs={{"{kbs}"}}')
    readable = frozenset(kbs)
    if "kb" in declared and not readable:
        raise InvalidInput(f'workflow "{name}" uses "kb" but names no knowledge base: add kbs={{"<name>", ...}}')
    if readable and "kb" not in declared:
        raise InvalidInput(f'workflow "{name}" names knowledge bases {sorted(readable)}: add "kb" to uses too')

    def declare(fn: WorkflowFn) -> Workflow:
        description = (fn.__doc__ or "").strip().split("\n")[0]
        return Workflow(name=name, uses=declared, fn=fn, description=description, kbs=readable)

    return declare


class WorkflowRegistry:
    """The workflows of this deployment, by name."""

    def __init__(self, workflows: Iterable[Workflow]) -> None:
        self._by_name: dict[str, Workflow] = {}
        for flow in workflows:
            if flow.name in self._by_name:
                raise InvalidInput(f'two workflows are named "{flow.name}": names must be unique')
            self._by_name[flow.name] = flow

    def get(self, name: str) -> Workflow:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise InvalidInput(f'unknown workflow "{name}": this deployment has {known}') from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

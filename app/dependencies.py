"""Dependencies between schedules: a schedule with ``after=[...]`` fires for an instant once every upstream
schedule's run for that same instant has succeeded, and receives their outputs as ``upstream``.

Checked when a schedule is defined: every upstream name must exist and the graph must have no cycle (the
message names it, ``a → b → a``). Fired by the worker that finishes the last upstream run: one run per
(schedule, instant) by the same unique key as the clock's, so two upstreams finishing together fire it once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from app.db.queries import sql
from app.errors import InvalidInput
from app.schedule import message_options
from app.tracing import current_trace_id, inject_traceparent

if TYPE_CHECKING:
    from app.db.pool import Connection

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("punchclock.clock")


def find_cycle(after: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in the graph ``schedule -> its upstreams`` as a closed path (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for upstream in after.get(name, ()):
            if state.get(upstream) == 1:
                return [*path[path.index(upstream) :], upstream]
            if upstream not in state and (cycle := visit(upstream)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(after):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def check_graph(after: Mapping[str, Sequence[str]], known: set[str]) -> None:
    """Raise :class:`InvalidInput` for an unknown upstream or a cycle."""
    for name, upstreams in sorted(after.items()):
        for upstream in upstreams:
            if upstream not in known:
                raise InvalidInput(f'schedule "{name}" runs after unknown schedule "{upstream}": define it first')
            if upstream == name:
                raise InvalidInput(f'schedule "{name}" cannot run after itself')
    cycle = find_cycle(after)
    if cycle:
        raise InvalidInput(f"dependency cycle: {' → '.join(cycle)}; remove one of these after= links")


async def check_dependencies(conn: Connection, changed: Mapping[str, Sequence[str]]) -> None:
    """Check the stored graph with ``changed`` (name -> after) applied, before writing it."""
    graph = {row["name"]: list(row["after"]) for row in await conn.fetch(sql("schedule_graph"))}
    graph.update({name: list(upstreams) for name, upstreams in changed.items()})
    check_graph(graph, set(graph))


async def fire_dependents(conn: Connection, run_id: int) -> list[int]:
    """After run ``run_id`` succeeded: insert the runs of the schedules now ready for its instant. The ids of
    runs inserted (already fired ones are left alone); they are published by the caller through the outbox."""
    inserted = []
    for row in await conn.fetch(sql("ready_dependents"), run_id):
        options = message_options(row["id"], row)
        args: dict[str, Any] = {**row["args"], "upstream": row["upstream"]}
        # Inside the upstream run's span: the dependent run continues its upstream's trace.
        with tracer.start_as_current_span(f"fire {row['name']}", attributes={"punchclock.trigger": "dependency"}):
            inject_traceparent(options)
            trace_id = current_trace_id()
        new_id = await conn.fetchval(
            sql("insert_dependency_run"),
            row["id"],
            row["name"],
            row["actor"],
            args,
            options,
            row["scheduled_for"],
            trace_id,
        )
        if new_id is not None:
            inserted.append(new_id)
            logger.info(
                "dependent schedule fired",
                extra={
                    "action": "schedule_fired",
                    "schedule": row["name"],
                    "run_id": new_id,
                    "trigger": "dependency",
                    "upstream_run": run_id,
                },
            )
    return inserted

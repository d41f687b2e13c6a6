"""Workflows the engine ships: ``dify`` runs one Dify workflow app with the schedule's inputs.

A schedule per input set is the point: ``city=Beijing`` at 02:00 and ``city=Shanghai`` at 03:00 are two
schedules of one app, each ``{"app": "weather", "inputs": {"city": ...}}`` for the ``dify`` actor.
"""

from __future__ import annotations

from typing import Any

from app.errors import InvalidInput
from app.workflows.context import WorkflowContext
from app.workflows.definition import workflow


@workflow("dify", uses={"dify"})
async def dify(ctx: WorkflowContext) -> dict[str, Any]:
    """Run a Dify workflow app; its outputs become the run's output."""
    app = ctx.params.get("app")
    inputs = ctx.params.get("inputs", {})
    if not isinstance(app, str) or not isinstance(inputs, dict):
        raise InvalidInput('the dify target needs args {"app": NAME, "inputs": {...}}')
    async with ctx.step(f"dify {app}"):
        result = await ctx.dify.run(app, inputs)
    return {
        "app": app,
        "workflow_run_id": result.workflow_run_id,
        "status": result.status,
        "outputs": result.outputs,
        "elapsed_time": result.elapsed_time,
        "total_tokens": result.total_tokens,
    }


BUILTIN_WORKFLOWS = [dify]

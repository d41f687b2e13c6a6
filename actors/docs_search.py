"""``docs_search``: the chunks of the ``docs`` knowledge base (schedules.py) nearest ``params["query"]``.

An example of a workflow reading a knowledge base: it names ``docs`` in ``kbs``, and may search no other. Run it
with ``actor="run_workflow"`` and ``args={"workflow": "docs_search", "query": "how are runs retried"}``; the
run's output is the hits (source, score, text). The search is a step of the run (``kb docs``).
"""

from __future__ import annotations

from typing import Any

from app.workflows.context import WorkflowContext
from app.workflows.definition import workflow


@workflow("docs_search", uses={"kb"}, kbs={"docs"})
async def docs_search(ctx: WorkflowContext) -> dict[str, Any]:
    """Search the docs knowledge base for params["query"]."""
    query = str(ctx.params.get("query") or "")
    k = int(ctx.params.get("k") or 3)
    hits = await ctx.kb("docs").search(query, k=k)
    return {
        "query": query,
        "hits": [{"source": hit.source, "score": round(hit.score, 4), "text": hit.text} for hit in hits],
    }

"""Workflows in code: ``async def`` functions over a context (params, run, llm, dify, http, memory, step),
run by the ``run_workflow`` actor. See ``definition.py`` for the decorator, ``context.py`` for the context."""

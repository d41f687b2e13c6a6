"""The actors and workflows punchclock runs: one module each, found by ``app/actors.py`` (``app/discovery.py``).

Add ``actors/greet.py`` with a ``@dramatiq.actor`` (or a ``@workflow``) and nothing else changes: every module
here is imported after the broker is set up, in name order; modules named ``_*`` are helpers and are not.
Import nothing from ``app.actors`` here and import your actor modules nowhere else before it, or they bind to
another broker (the worker says so when it boots).
"""

"""``app.actors`` imported afresh for the tests that run the CLI in-process, whatever imported it before.

``app.actors`` reads its settings, builds the broker the CLI publishes on and binds the ``app`` logger's handler
to the current ``sys.stderr`` once, when first imported. A plain ``import`` is a no-op once any other test
module has imported it (``tests/unit/test_retries.py`` does, at collection, with the shell's environment), so
the CLI tests' settings would depend on which modules were collected. :func:`fresh_app_actors` sets the imported
wiring aside, imports it again under the given environment, and puts everything back afterwards.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType

import dramatiq
import dramatiq.broker
import pytest

import app


def _wiring_modules() -> list[str]:
    """``app.actors`` and the modules only it imports: the ``actors`` package and its actors, which bind to the
    broker ``app.actors`` sets (and which it refuses if they were imported first)."""
    return [name for name in sys.modules if name in ("app.actors", "actors") or name.startswith("actors.")]


@contextmanager
def fresh_app_actors(env: Mapping[str, str]) -> Iterator[ModuleType]:
    """``app.actors`` imported anew with ``env`` set, on a new broker; on exit, the modules, Dramatiq's global
    broker and the ``app`` logger are as they were before."""
    saved_modules = {name: sys.modules.pop(name) for name in _wiring_modules()}
    saved_attribute = vars(app).get("actors")  # importing a submodule sets it on the package
    saved_broker = dramatiq.broker.global_broker
    logger = logging.getLogger("app")
    saved_logger = (list(logger.handlers), logger.level, logger.propagate)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            module = importlib.import_module("app.actors")
        yield module
    finally:
        for name in _wiring_modules():
            del sys.modules[name]
        sys.modules.update(saved_modules)
        if saved_attribute is None:
            vars(app).pop("actors", None)
        else:
            setattr(app, "actors", saved_attribute)  # noqa: B010 (app.actors would name the new module)
        dramatiq.broker.global_broker = saved_broker
        handlers, level, propagate = saved_logger
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate

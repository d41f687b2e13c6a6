"""Finding the project's actors and workflows: every module of the ``actors`` package, imported in name order.

Adding an actor or a workflow is one file under ``actors/``: its ``@dramatiq.actor`` registers on the broker
when the module is imported, and its ``@workflow`` is found among the module's names. No list to keep in step,
nothing for a linter to call unused. Modules whose name starts with ``_`` are helpers: imported only by the
modules that use them, so a half-written one can sit there without being loaded.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from app.workflows.definition import Workflow


def import_modules(package: ModuleType) -> list[ModuleType]:
    """Import every public module (and subpackage) directly under ``package``, in name order, so the actors
    register in the same order on every worker."""
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def workflows_in(modules: Iterable[ModuleType]) -> list[Workflow]:
    """The workflows declared at the top level of ``modules``; one imported into another module counts once."""
    found: dict[int, Workflow] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Workflow):
                found.setdefault(id(value), value)
    return list(found.values())

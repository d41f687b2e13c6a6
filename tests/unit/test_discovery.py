"""Finding actor modules and workflows under a package (``app/discovery.py``), on a package written to disk."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.discovery import import_modules, workflows_in

FLOW = """
from app.workflows.definition import workflow


@workflow("{name}")
async def {name}(ctx):
    return None
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "found_here"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [name for name in sys.modules if name == "found_here" or name.startswith("found_here.")]:
        del sys.modules[name]


def test_every_public_module_is_imported_in_name_order(package: Path) -> None:
    for name in ("zeta", "alpha", "_helper"):
        (package / f"{name}.py").write_text("")
    (package / "nested").mkdir()
    (package / "nested" / "__init__.py").write_text("")
    modules = import_modules(importlib.import_module("found_here"))
    assert [m.__name__ for m in modules] == ["found_here.alpha", "found_here.nested", "found_here.zeta"]
    assert "found_here._helper" not in sys.modules  # a helper is loaded only by the modules that use it


def test_workflows_are_found_by_their_names_once_each(package: Path) -> None:
    (package / "brief.py").write_text(FLOW.format(name="brief"))
    (package / "report.py").write_text(FLOW.format(name="report") + "\nfrom found_here.brief import brief\n")
    (package / "plain.py").write_text("VALUE = 1\n")
    flows = workflows_in(import_modules(importlib.import_module("found_here")))
    assert sorted(flow.name for flow in flows) == ["brief", "report"]


def test_a_module_that_fails_to_import_fails_the_boot_naming_it(package: Path) -> None:
    (package / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        import_modules(importlib.import_module("found_here"))

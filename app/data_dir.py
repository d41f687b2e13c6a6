"""Where the embedded PostgreSQL lives, whatever the working directory: one answer for the CLI, dev and workers.

1. ``PUNCHCLOCK_DATA_DIR``, when set (relative to the working directory);
2. else ``.punchclock`` in the project: the nearest directory, from the working directory up, whose
   ``pyproject.toml`` names the project ``punchclock`` (so ``punchclock runs show 1`` from ``actors/`` finds the
   database ``make dev`` created at the top);
3. else, outside any checkout, one per-user place: ``$XDG_DATA_HOME/punchclock``, by default
   ``~/.local/share/punchclock``.

A relative data directory used to mean a new, empty database in every folder the CLI was run from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

PROJECT_NAME = "punchclock"
PROJECT_DATA_DIR = ".punchclock"


def find_data_dir(cwd: Path, environ: Mapping[str, str], home: Path) -> Path:
    """The data directory (absolute) by the rules of the module docstring."""
    explicit = environ.get("PUNCHCLOCK_DATA_DIR", "").strip()
    if explicit:
        return (cwd / Path(explicit).expanduser()).resolve()
    project = find_project(cwd)
    if project is not None:
        return project / PROJECT_DATA_DIR
    data_home = environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home and Path(data_home).is_absolute() else home / ".local" / "share"
    return base / PROJECT_NAME


def find_project(cwd: Path) -> Path | None:
    """The nearest of ``cwd`` and its parents holding punchclock's ``pyproject.toml``; None outside a checkout."""
    for directory in (cwd.resolve(), *cwd.resolve().parents):
        if _is_punchclock(directory / "pyproject.toml"):
            return directory
    return None


def _is_punchclock(pyproject: Path) -> bool:
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):  # absent or not ours to judge
        return False
    return isinstance(project, dict) and project.get("name") == PROJECT_NAME

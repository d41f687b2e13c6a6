"""Named queries: each lives in ``sql/<name>.sql`` with ``$n`` parameters, read once and cached."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def sql(name: str) -> str:
    """The text of ``sql/<name>.sql``; a missing name is a programming error (FileNotFoundError)."""
    return resources.files("app.db").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")

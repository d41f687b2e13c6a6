"""What Python's ``json`` accepts and PostgreSQL's ``jsonb`` refuses, found before anything is written.

Python reads and writes ``NaN``, ``Infinity`` and ``-Infinity`` (and a number too large for a double, like
``1e999``, reads as Infinity); it reads ``\\u0000`` and a lone UTF-16 surrogate (``\\ud800``) into a string.
jsonb stores none of them, so a schedule's or a run's args holding one would reach PostgreSQL and come back as
its raw error. :func:`jsonb_problem` names the first such value and where it is, for an ``InvalidInput``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def jsonb_problem(value: Any, root: str) -> str | None:
    """Why jsonb would refuse ``value`` (as parsed by ``json.loads``), naming the first bad value and its path
    from ``root`` (``args.items[2]``); None when jsonb stores it.

    Iterative, so a deeply nested value cannot exhaust the stack here.
    """
    pending: list[tuple[Any, str]] = [(value, root)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            return f"{name} at {path}: PostgreSQL's jsonb has no NaN or Infinity; use a number or null"
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return f"{problem[0]} in the string at {path}: {problem[1]}"
        elif isinstance(item, dict):
            children: list[tuple[Any, str]] = []
            for key, child in item.items():
                problem = _string_problem(key)
                if problem:
                    return f"{problem[0]} in the key {_key(key)} at {path}: {problem[1]}"
                children.append((child, f"{path}.{_key(key)}"))
            pending.extend(reversed(children))  # first key first
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in reversed(list(enumerate(item))))
    return None


def _string_problem(text: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) for a string jsonb refuses."""
    if "\x00" in text:
        return "a NUL character (\\u0000)", "PostgreSQL's jsonb cannot store it; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # the only str that UTF-8 cannot encode holds a surrogate
        return (
            f"a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x})",
            "PostgreSQL's jsonb refuses half a character; write the whole pair (\\ud83d\\ude00) or the character",
        )
    return None


def _key(key: str) -> str:
    """A key as it appears in a path: bare when it reads as a name, else JSON-quoted (escapes kept visible)."""
    return key if key.isidentifier() else json.dumps(key)

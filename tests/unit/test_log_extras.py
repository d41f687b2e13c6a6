"""No log call passes an ``extra`` key that ``logging.LogRecord`` already has (``created``, ``name``, ``msg``,
…): the logging module raises KeyError for one, but only when the record is made, so at a level that is off in
a test run alone the mistake hides until a suite or a worker turns that level on."""

from __future__ import annotations

import ast
import logging

from tests.services import ROOT

RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


def extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    for key in keyword.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found.append((key.lineno, key.value))
    return found


def test_no_log_extra_overwrites_a_log_record_attribute() -> None:
    clashes = [
        f"{path.relative_to(ROOT)}:{line}: {key}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        for line, key in extra_keys(ast.parse(path.read_text()))
        if key in RESERVED
    ]
    assert clashes == []


def test_the_check_sees_a_clash() -> None:
    source = 'logger.info("x", extra={"action": "a", "created": 1})'
    assert [key for _, key in extra_keys(ast.parse(source)) if key in RESERVED] == ["created"]

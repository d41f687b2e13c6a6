"""What PostgreSQL's jsonb refuses and Python's json reads: named with its path, before anything is written."""

from __future__ import annotations

import json

import pytest

from app.jsonb import jsonb_problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1, "b": [true, null, "x", 1.5, {"c": "é😀"}]}', None),
        ('{"a": NaN}', "NaN at args.a"),
        ('{"a": {"b": [0, Infinity]}}', "Infinity at args.a.b[1]"),
        ('{"a": -Infinity}', "-Infinity at args.a"),
        ('{"a": 1e999}', "Infinity at args.a"),  # too large for a double: Python reads it as Infinity
        ('{"a": ["\\u0000"]}', "a NUL character (\\u0000) in the string at args.a[0]"),
        ('{"a\\u0000": 1}', 'a NUL character (\\u0000) in the key "a\\u0000" at args'),
        ('{"x y": {"\\udc00": 1}}', 'a lone UTF-16 surrogate (\\udc00) in the key "\\udc00" at args."x y"'),
        ('{"first": NaN, "second": "\\u0000"}', "NaN at args.first"),  # the first in document order
        ('{"first": ["\\u0000"], "second": NaN}', "a NUL character (\\u0000) in the string at args.first[0]"),
    ],
)
def test_the_first_value_jsonb_refuses_is_named_with_its_path(text: str, problem: str | None) -> None:
    found = jsonb_problem(json.loads(text), "args")
    assert found == problem if problem is None else (found or "").startswith(problem + ":"), found


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    value: object = float("nan")
    for _ in range(100_000):
        value = [value]
    assert (jsonb_problem(value, "v") or "").startswith("NaN at v" + "[0]" * 100_000 + ":")

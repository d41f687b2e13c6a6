from __future__ import annotations

import pytest

from app.dependencies import check_graph, find_cycle
from app.errors import InvalidInput


def test_find_cycle_names_the_closed_path() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["b"]}) is None
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "c", "b", "a"]
    assert find_cycle({"x": ["y"], "y": ["y"]}) == ["y", "y"]


def test_check_graph_refuses_unknown_names_and_cycles() -> None:
    check_graph({"a": [], "b": ["a"], "c": ["a", "b"]}, {"a", "b", "c"})
    with pytest.raises(InvalidInput, match='schedule "b" runs after unknown schedule "nope"'):
        check_graph({"b": ["nope"]}, {"b"})
    with pytest.raises(InvalidInput, match='schedule "a" cannot run after itself'):
        check_graph({"a": ["a"]}, {"a"})
    with pytest.raises(InvalidInput, match="dependency cycle: a → c → b → a"):
        check_graph({"a": ["c"], "b": ["a"], "c": ["b"]}, {"a", "b", "c"})

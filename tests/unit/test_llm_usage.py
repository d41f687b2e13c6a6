from __future__ import annotations

from app.ai import Usage


def test_usage_adds_up() -> None:
    calls = [Usage(10, 5), Usage(3, 0), Usage(input_tokens=7, output_tokens=1)]

    total = sum(calls, Usage())

    assert total == Usage(input_tokens=20, output_tokens=6)
    assert total.total_tokens == 26
    assert Usage() + Usage(1, 2) == Usage(1, 2)

"""Token usage of LLM calls, summed onto the step and the run that made them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Tokens billed for one call, or a sum of calls: ``sum(usages, Usage())``.

    Embeddings bill input tokens only. A provider that reports no usage counts as 0, not as unknown.
    """

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

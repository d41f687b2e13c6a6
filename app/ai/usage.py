"""Token usage of LLM and Dify calls, summed onto the step and the run that made them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Tokens billed for one call, or a sum of calls: ``sum(usages, Usage())``.

    Embeddings bill input tokens only. A provider that reports no usage counts as 0, not as unknown. One that
    reports only a total (Dify) is counted by :meth:`from_total`.
    """

    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def from_total(cls, total_tokens: int) -> Usage:
        """Usage known only as a total, as Dify reports a workflow run's ``total_tokens``: counted as output
        tokens, input 0. The run and step rows keep input and output only, so this keeps their sum, the run's
        total, right; the split is unknown (``runs show`` then reads "0 in, N out")."""
        return cls(0, max(total_tokens, 0))

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

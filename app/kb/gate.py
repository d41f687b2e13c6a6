"""The quality gate: a new generation of a knowledge base goes live only if it answers its golden queries (pure).

A golden query names what a good answer contains: the sources it comes from, keywords its text holds, or both. A
retrieved document is *relevant* when its source is one of the expected sources (if any are named) and its text
holds every expected keyword (if any are named; NFKC, case and whitespace ignored, so "PostgreSQL" matches
"postgresql"). Over the top ``k`` results of each query:

- hit@k: 1 if any result is relevant, else 0;
- reciprocal rank: 1 / the rank of the first relevant result, 0 if none;
- recall@k: the share of expected sources among the results (of expected keywords found in some result, when the
  query names no source); several chunks of one source count once.

The aggregates are their means over the golden queries. :class:`Gate` judges a candidate generation against
floors and, with ``no_regression``, against the active generation: a query that was a hit on the active one and
is a miss on the candidate is a regression, named in the verdict, and hit@k and MRR over the golden queries both
were scored on may fall by at most ``tolerance``. The results serialize to JSON (``to_json`` / ``from_json``), to
be stored on the generation.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidInput

# Float sums such as 0.7 - 0.1 land a hair off: a score equal to its floor, to the tenth, passes.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GoldenQuery:
    query: str
    expected_sources: tuple[str, ...] = ()
    expected_keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise InvalidInput("invalid golden query: the query is blank; write the question a user would ask")
        if not self.expected_sources and not self.expected_keywords:
            raise InvalidInput(
                f'invalid golden query "{self.query}": it expects nothing; name expected_sources, expected_keywords '
                "or both"
            )
        blank = [keyword for keyword in self.expected_keywords if not _fold(keyword)]
        if blank:
            raise InvalidInput(f'invalid golden query "{self.query}": a blank expected keyword matches every text')


@dataclass(frozen=True)
class Retrieved:
    """One ranked result of a query: the source it comes from (path or URL) and the chunk's text."""

    source: str
    text: str


@dataclass(frozen=True)
class QueryScore:
    query: str
    hit: bool
    reciprocal_rank: float
    recall: float
    first_relevant_rank: int | None  # 1-based, None when no result in the top k is relevant
    top_sources: tuple[str, ...]  # the sources of the top k, in rank order: what came instead, when it missed

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "hit": self.hit,
            "reciprocal_rank": self.reciprocal_rank,
            "recall": self.recall,
            "first_relevant_rank": self.first_relevant_rank,
            "top_sources": list(self.top_sources),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueryScore:
        rank = data["first_relevant_rank"]
        return cls(
            query=str(data["query"]),
            hit=bool(data["hit"]),
            reciprocal_rank=float(data["reciprocal_rank"]),
            recall=float(data["recall"]),
            first_relevant_rank=None if rank is None else int(rank),
            top_sources=tuple(str(source) for source in data["top_sources"]),
        )


@dataclass(frozen=True)
class Evaluation:
    """A generation's scores on the golden queries at depth ``k``."""

    k: int
    queries: tuple[QueryScore, ...]
    hit_at_k: float
    mrr: float
    recall_at_k: float

    def by_query(self) -> dict[str, QueryScore]:
        return {score.query: score for score in self.queries}

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "hit_at_k": self.hit_at_k,
            "mrr": self.mrr,
            "recall_at_k": self.recall_at_k,
            "queries": [score.to_json() for score in self.queries],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(
            k=int(data["k"]),
            queries=tuple(QueryScore.from_json(score) for score in data["queries"]),
            hit_at_k=float(data["hit_at_k"]),
            mrr=float(data["mrr"]),
            recall_at_k=float(data["recall_at_k"]),
        )


def evaluate(golden: Sequence[GoldenQuery], results: Mapping[str, Sequence[Retrieved]], *, k: int) -> Evaluation:
    """Scores of ``results`` (each golden query's text → its ranked results) on ``golden`` at depth ``k``."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInput(f"invalid k {k!r}: use the number of results a query retrieves, 1 or more")
    if not golden:
        raise InvalidInput("no golden queries: add some to the knowledge base, or define it without a gate")
    seen: set[str] = set()
    for query in golden:
        if query.query in seen:
            raise InvalidInput(f'golden query "{query.query}" is listed twice: keep one')
        seen.add(query.query)
        if query.query not in results:
            raise InvalidInput(f'no results for golden query "{query.query}": run every golden query before scoring')
    scores = tuple(score_query(query, results[query.query], k=k) for query in golden)
    count = len(scores)
    return Evaluation(
        k=k,
        queries=scores,
        hit_at_k=sum(score.hit for score in scores) / count,
        mrr=sum(score.reciprocal_rank for score in scores) / count,
        recall_at_k=sum(score.recall for score in scores) / count,
    )


def score_query(golden: GoldenQuery, ranked: Sequence[Retrieved], *, k: int) -> QueryScore:
    top = list(ranked[:k])
    keywords = [_fold(keyword) for keyword in golden.expected_keywords]
    texts = [_fold(result.text) for result in top]
    first: int | None = None
    for rank, (result, text) in enumerate(zip(top, texts, strict=True), start=1):
        source_ok = not golden.expected_sources or result.source in golden.expected_sources
        if source_ok and all(keyword in text for keyword in keywords):
            first = rank
            break
    if golden.expected_sources:
        found = {result.source for result in top} & set(golden.expected_sources)
        recall = len(found) / len(set(golden.expected_sources))
    else:
        recall = sum(any(keyword in text for text in texts) for keyword in keywords) / len(keywords)
    return QueryScore(
        query=golden.query,
        hit=first is not None,
        reciprocal_rank=0.0 if first is None else 1.0 / first,
        recall=recall,
        first_relevant_rank=first,
        top_sources=tuple(result.source for result in top),
    )


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # why it failed, one line each; empty when it passed
    regressed: tuple[str, ...]  # golden queries that were hits on the active generation and are misses now
    candidate: Evaluation  # stored with the verdict: which queries missed, and what came instead

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "regressed": list(self.regressed),
            "candidate": self.candidate.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            passed=bool(data["passed"]),
            reasons=tuple(str(reason) for reason in data["reasons"]),
            regressed=tuple(str(query) for query in data["regressed"]),
            candidate=Evaluation.from_json(data["candidate"]),
        )


@dataclass(frozen=True)
class Gate:
    """Floors a candidate must reach, and whether it may do worse than the active generation.

    ``tolerance`` is how far hit@k and MRR may fall below the active generation's: re-chunking shuffles ranks a
    little (one query of twenty moving from rank 1 to 2 costs 0.025 of MRR) without making answers worse."""

    min_hit_at_k: float = 0.0
    min_mrr: float = 0.0
    min_recall_at_k: float = 0.0
    no_regression: bool = True
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        for name in ("min_hit_at_k", "min_mrr", "min_recall_at_k", "tolerance"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise InvalidInput(f"invalid gate {name} {value!r}: use a number from 0 to 1, like 0.8")

    def judge(self, candidate: Evaluation, active: Evaluation | None = None) -> Verdict:
        """Whether ``candidate`` may replace ``active`` (None: there is no active generation yet)."""
        reasons: list[str] = []
        for label, score, floor in (
            ("hit@k", candidate.hit_at_k, self.min_hit_at_k),
            ("MRR", candidate.mrr, self.min_mrr),
            ("recall@k", candidate.recall_at_k, self.min_recall_at_k),
        ):
            if score < floor - _EPSILON:
                reasons.append(f"{label} {score:.3f} is below the floor {floor:.3f} (k={candidate.k})")
        regressed: tuple[str, ...] = ()
        if self.no_regression and active is not None:
            if active.k != candidate.k:
                raise InvalidInput(
                    f"the active generation was scored at k={active.k} and the candidate at k={candidate.k}: "
                    "score both at the same k"
                )
            reasons.extend(self._compare_means(candidate, active))
            was = active.by_query()
            regressed = tuple(
                score.query
                for score in candidate.queries
                if not score.hit and score.query in was and was[score.query].hit
            )
            if regressed:
                named = ", ".join(f'"{query}"' for query in regressed)
                queries = "golden query" if len(regressed) == 1 else "golden queries"
                reasons.append(f"{len(regressed)} {queries} answered by the active generation now missed: {named}")
        return Verdict(passed=not reasons, reasons=tuple(reasons), regressed=regressed, candidate=candidate)

    def _compare_means(self, candidate: Evaluation, active: Evaluation) -> list[str]:
        """hit@k and MRR falls beyond the tolerance, over the golden queries both generations were scored on: a
        golden query added since the active generation was scored must not count against the candidate."""
        was = active.by_query()
        shared = [(score, was[score.query]) for score in candidate.queries if score.query in was]
        if not shared:
            return []
        count = len(shared)
        reasons = []
        for label, now, before in (
            ("hit@k", sum(new.hit for new, _ in shared) / count, sum(old.hit for _, old in shared) / count),
            (
                "MRR",
                sum(new.reciprocal_rank for new, _ in shared) / count,
                sum(old.reciprocal_rank for _, old in shared) / count,
            ),
        ):
            if now < before - self.tolerance - _EPSILON:
                reasons.append(
                    f"{label} fell from {before:.3f} to {now:.3f} on the {count} golden queries both generations were "
                    f"scored on, more than the tolerance {self.tolerance:.3f}"
                )
        return reasons

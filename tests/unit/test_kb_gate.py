"""The quality gate: per-query hit@k, reciprocal rank and recall@k, their means, floors and no regression (pure)."""

from __future__ import annotations

import json
import re

import pytest

from app.errors import InvalidInput
from app.kb.gate import Evaluation, Gate, GoldenQuery, QueryScore, Retrieved, Verdict, evaluate, score_query

REINDEX = GoldenQuery("知识库多久重新索引一次？", expected_sources=("kb.md",))
CRON = GoldenQuery("How is a missed run handled?", expected_keywords=("misfire", "Policy"))
BOTH = GoldenQuery("发票", expected_sources=("billing.md", "invoices.md"), expected_keywords=("发票",))


def hit(source: str, text: str = "") -> Retrieved:
    return Retrieved(source=source, text=text)


def test_a_relevant_result_at_rank_2_scores_half() -> None:
    score = score_query(REINDEX, [hit("other.md"), hit("kb.md"), hit("kb.md")], k=3)
    assert score == QueryScore(
        query=REINDEX.query,
        hit=True,
        reciprocal_rank=0.5,
        recall=1.0,
        first_relevant_rank=2,
        top_sources=("other.md", "kb.md", "kb.md"),
    )


def test_results_below_k_do_not_count() -> None:
    score = score_query(REINDEX, [hit("a.md"), hit("b.md"), hit("kb.md")], k=2)
    assert (score.hit, score.reciprocal_rank, score.recall, score.first_relevant_rank) == (False, 0.0, 0.0, None)
    assert score.top_sources == ("a.md", "b.md")


def test_keywords_must_all_be_in_one_document_ignoring_case_and_width() -> None:
    ranked = [hit("a.md", "the MISFIRE setting"), hit("b.md", "A policy decides.\nMisfire   policy: skip")]
    score = score_query(CRON, ranked, k=5)
    assert (score.hit, score.first_relevant_rank) == (True, 2)
    # recall of a keyword-only query: the share of keywords found in any top-k text
    assert score_query(CRON, [hit("a.md", "ｍｉｓｆｉｒｅ only")], k=5).recall == 0.5


def test_sources_and_keywords_together_and_recall_counts_each_source_once() -> None:
    ranked = [hit("billing.md", "账单"), hit("billing.md", "月底生成发票"), hit("billing.md", "发票")]
    score = score_query(BOTH, ranked, k=3)
    assert (score.hit, score.first_relevant_rank, score.recall) == (True, 2, 0.5)
    assert score_query(BOTH, [hit("other.md", "发票")], k=3).hit is False


def test_aggregates_are_means_over_the_golden_queries() -> None:
    evaluation = evaluate(
        [REINDEX, CRON, BOTH],
        {
            REINDEX.query: [hit("kb.md")],
            CRON.query: [hit("x.md"), hit("y.md"), hit("z.md", "misfire policy")],
            BOTH.query: [hit("none.md")],
        },
        k=3,
    )
    assert evaluation.k == 3
    assert [score.hit for score in evaluation.queries] == [True, True, False]
    assert evaluation.hit_at_k == pytest.approx(2 / 3)
    assert evaluation.mrr == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert evaluation.recall_at_k == pytest.approx((1 + 1 + 0) / 3)


def evaluation_of(hits: dict[str, int | None], k: int = 5) -> Evaluation:
    """An evaluation where each named query's first relevant result is at the given rank (None: a miss)."""
    golden = [GoldenQuery(query, expected_sources=("good.md",)) for query in hits]
    results = {
        query: [hit("bad.md")] * ((rank or k + 1) - 1) + [hit("good.md")] * bool(rank) for query, rank in hits.items()
    }
    return evaluate(golden, results, k=k)


def test_floors_fail_the_gate_with_the_scores_named() -> None:
    candidate = evaluation_of({"a": 1, "b": 2, "c": None, "d": None})
    verdict = Gate(min_hit_at_k=0.8, min_mrr=0.5, min_recall_at_k=0.4).judge(candidate)
    assert verdict == Verdict(
        passed=False,
        reasons=(
            "hit@k 0.500 is below the floor 0.800 (k=5)",
            "MRR 0.375 is below the floor 0.500 (k=5)",
        ),
        regressed=(),
        candidate=candidate,
    )


def test_a_score_equal_to_its_floor_passes() -> None:
    candidate = evaluation_of({str(n): 1 if n < 7 else None for n in range(10)})
    assert Gate(min_hit_at_k=0.7, min_mrr=0.7, min_recall_at_k=0.7).judge(candidate).passed
    assert not Gate(min_hit_at_k=0.71).judge(candidate).passed


def test_a_drop_equal_to_the_tolerance_passes_despite_float_rounding() -> None:
    active = evaluation_of({str(n): 1 if n < 6 else 2 for n in range(10)})  # MRR 0.8
    candidate = evaluation_of({str(n): 1 if n < 4 else 2 for n in range(10)})  # MRR 0.7
    assert (active.mrr, candidate.mrr, active.mrr - 0.1) == (0.8, 0.7, 0.7000000000000001)
    assert Gate(tolerance=0.1).judge(candidate, active).passed
    assert not Gate(tolerance=0.09).judge(candidate, active).passed


def test_a_query_missed_that_the_active_generation_answered_is_a_named_regression() -> None:
    active = evaluation_of({"a": 1, "b": 1, "c": None})
    candidate = evaluation_of({"a": 1, "b": None, "c": 1})  # same hit@k and MRR, but "b" is lost
    verdict = Gate(tolerance=0.5).judge(candidate, active)
    assert not verdict.passed
    assert verdict.regressed == ("b",)
    assert verdict.reasons == ('1 golden query answered by the active generation now missed: "b"',)
    assert Gate(no_regression=False).judge(candidate, active).passed


def test_equal_scores_to_the_active_generation_pass_and_drops_beyond_tolerance_fail() -> None:
    active = evaluation_of({"a": 1, "b": 1, "c": 1, "d": 1})
    assert Gate(tolerance=0.0).judge(active, active).passed  # a tie is no regression
    slower = evaluation_of({"a": 1, "b": 1, "c": 1, "d": 2})  # MRR 1.0 → 0.875, every query still a hit
    assert Gate(tolerance=0.125).judge(slower, active).passed  # a drop equal to the tolerance passes
    verdict = Gate(tolerance=0.1).judge(slower, active)
    assert verdict.reasons == (
        "MRR fell from 1.000 to 0.875 on the 4 golden queries both generations were scored on, more than the "
        "tolerance 0.100",
    )
    assert verdict.regressed == ()


def test_a_golden_query_added_since_the_active_generation_does_not_count_against_the_candidate() -> None:
    active = evaluation_of({"a": 1, "b": 1})
    candidate = evaluation_of({"a": 1, "b": 1, "added": None})  # hit@k 0.667 overall, 1.0 on the shared two
    assert Gate(tolerance=0.0).judge(candidate, active).passed
    assert not Gate(min_hit_at_k=0.7).judge(candidate, active).passed  # floors still see every query


def test_several_regressions_are_all_named_in_order() -> None:
    active = evaluation_of({"a": 1, "b": 1, "c": 1, "new": None})
    candidate = evaluation_of({"a": None, "b": 1, "c": None, "only-in-candidate": None})
    verdict = Gate(tolerance=1.0).judge(candidate, active)
    assert verdict.regressed == ("a", "c")
    assert verdict.reasons == ('2 golden queries answered by the active generation now missed: "a", "c"',)


def test_without_an_active_generation_only_the_floors_apply() -> None:
    assert Gate(min_hit_at_k=0.5).judge(evaluation_of({"a": 1, "b": None})).passed


def test_scores_at_different_k_are_not_compared() -> None:
    with pytest.raises(InvalidInput, match="k=3 and the candidate at k=5: score both at the same k"):
        Gate().judge(evaluation_of({"a": 1}, k=5), evaluation_of({"a": 1}, k=3))


def test_evaluations_and_verdicts_round_trip_through_json() -> None:
    active = evaluation_of({"a": 1, "知识库": 2})
    candidate = evaluation_of({"a": None, "知识库": 1})
    verdict = Gate().judge(candidate, active)
    stored = json.loads(json.dumps(verdict.to_json(), ensure_ascii=False))
    assert stored["candidate"]["queries"][1]["query"] == "知识库"
    restored = Verdict.from_json(stored)
    assert restored == verdict
    assert restored.candidate == candidate
    assert Evaluation.from_json(json.loads(json.dumps(active.to_json()))) == active


@pytest.mark.parametrize(
    ("golden", "message"),
    [
        (lambda: GoldenQuery("  "), "invalid golden query: the query is blank"),
        (lambda: GoldenQuery("q"), 'invalid golden query "q": it expects nothing'),
        (lambda: GoldenQuery("q", expected_keywords=(" ",)), "a blank expected keyword matches every text"),
    ],
)
def test_golden_queries_must_expect_something(golden: object, message: str) -> None:
    assert callable(golden)
    with pytest.raises(InvalidInput, match=message):
        golden()


def test_evaluate_refuses_what_it_cannot_score() -> None:
    with pytest.raises(InvalidInput, match="no golden queries"):
        evaluate([], {}, k=5)
    with pytest.raises(InvalidInput, match="invalid k 0"):
        evaluate([REINDEX], {REINDEX.query: []}, k=0)
    with pytest.raises(InvalidInput, match="listed twice"):
        evaluate([REINDEX, REINDEX], {REINDEX.query: []}, k=5)
    with pytest.raises(InvalidInput, match=re.escape(f'no results for golden query "{CRON.query}": run every')):
        evaluate([REINDEX, CRON], {REINDEX.query: []}, k=5)


@pytest.mark.parametrize("name", ["min_hit_at_k", "min_mrr", "min_recall_at_k", "tolerance"])
def test_gate_numbers_are_between_0_and_1(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Gate(**{name: 1.5})  # type: ignore[arg-type]
    assert str(caught.value) == f"invalid gate {name} 1.5: use a number from 0 to 1, like 0.8"

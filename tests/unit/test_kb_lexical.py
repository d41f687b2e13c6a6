"""The offline lexical embedder: stable, normalized, and ranking by shared characters and words (pure)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from app.errors import InvalidInput
from app.kb.lexical import LexicalEmbedder, features

DOCUMENTS = {
    "schedules.md": "定时任务按照 cron 表达式触发，每次触发只执行一次，错过的触发按策略补跑。",
    "kb.md": "知识库每晚重新索引：抓取来源，切分文本，计算向量，通过质量门槛后原子切换。",
    "billing.md": "账单模块统计每个用户的模型调用费用，并在月底生成发票。",
    "english.md": "The knowledge base is re-indexed nightly: sources are fetched, chunked and embedded.",
}


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def ranking(query: str, embedder: LexicalEmbedder) -> list[str]:
    names = list(DOCUMENTS)
    vectors = embedder.embed([DOCUMENTS[name] for name in names])
    [asked] = embedder.embed([query])
    return sorted(names, key=lambda name: -cosine(asked, vectors[names.index(name)]))


def test_a_chinese_query_ranks_the_document_with_its_words_first() -> None:
    embedder = LexicalEmbedder()
    assert ranking("知识库怎么重新索引？", embedder)[0] == "kb.md"
    assert ranking("错过的定时任务会补跑吗", embedder)[0] == "schedules.md"
    assert ranking("月底的发票", embedder)[0] == "billing.md"


def test_an_english_query_ranks_the_english_document_first_despite_inflections() -> None:
    assert ranking("how often is the knowledge base reindexed", LexicalEmbedder())[0] == "english.md"


def test_identical_texts_have_cosine_1_and_vectors_are_unit_length() -> None:
    embedder = LexicalEmbedder()
    texts = [*DOCUMENTS.values(), "x", "Ｆｕｌｌ　ｗｉｄｔｈ ＡＢＣ"]
    vectors = embedder.embed(texts)
    again = embedder.embed(texts)
    for vector, same in zip(vectors, again, strict=True):
        assert len(vector) == 384
        assert math.isclose(math.sqrt(cosine(vector, vector)), 1.0)
        assert math.isclose(cosine(vector, same), 1.0)


def test_case_width_and_whitespace_do_not_change_the_vector() -> None:
    embedder = LexicalEmbedder()
    [a, b] = embedder.embed(["Knowledge  Base 知识库", "ｋｎｏｗｌｅｄｇｅ base\n知识库"])
    assert math.isclose(cosine(a, b), 1.0)


def test_unrelated_texts_are_far_apart() -> None:
    embedder = LexicalEmbedder()
    [a, b] = embedder.embed(["PostgreSQL vacuum settings", "猫喜欢晒太阳"])
    assert abs(cosine(a, b)) < 0.2


def test_a_text_without_letters_or_digits_is_the_zero_vector() -> None:
    assert LexicalEmbedder(dims=16).embed(["", "?!。，"]) == [[0.0] * 16, [0.0] * 16]


def test_features_are_cjk_character_ngrams_and_latin_words_with_their_ngrams() -> None:
    assert list(features("知识库")) == ["c:知", "c:识", "c:库", "c:知识", "c:识库", "c:知识库"]
    assert list(features("Go")) == ["w:go", "g:<go", "g:go>", "g:<go>"]


def test_the_id_names_the_version_and_dims() -> None:
    assert LexicalEmbedder().id == "lexical-v1-384"
    assert LexicalEmbedder(dims=256).id == "lexical-v1-256"
    assert LexicalEmbedder(dims=256).dims == 256


def test_vectors_are_the_same_in_another_process() -> None:
    # Python salts hash() per process: the vectors must come from a stable hash, or the cache would lie.
    code = "from app.kb.lexical import LexicalEmbedder; print(LexicalEmbedder(dims=32).embed(['知识库 reindex'])[0])"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert runs == {str(LexicalEmbedder(dims=32).embed(["知识库 reindex"])[0]) + "\n"}


@pytest.mark.parametrize("dims", [0, 15, 2001, True])
def test_bad_dims_are_refused_with_the_range(dims: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        LexicalEmbedder(dims=dims)
    assert str(caught.value) == (
        f"invalid dims {dims!r} for the lexical embedder: use a whole number from 16 to 2000 "
        "(the most pgvector indexes take); 384 is the default"
    )


def test_one_string_is_refused_instead_of_embedding_its_characters() -> None:
    with pytest.raises(InvalidInput, match=r"pass \[text\]"):
        LexicalEmbedder().embed("知识库")

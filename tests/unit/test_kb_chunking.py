"""Chunking: sentences kept whole, chunks within max_chars, overlap of whole sentences, content ids (pure)."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from app.errors import InvalidInput
from app.kb.chunking import Chunk, ChunkingConfig, chunk, chunk_id, normalize

ENGLISH = [f"Sentence number {n} says something about schedules and runs." for n in range(40)]
CHINESE = [f"第{n}句话讲的是定时任务和知识库的重新索引。" for n in range(40)]


def sentences_in(text: str, sentences: list[str]) -> list[str]:
    return [sentence for sentence in sentences if sentence in text]


def test_blank_text_has_no_chunks() -> None:
    assert chunk("") == []
    assert chunk(" \n\n \n") == []


def test_short_text_is_one_chunk_with_seq_0() -> None:
    [only] = chunk("Hello world. 你好，世界。")
    assert only == Chunk(text="Hello world. 你好，世界。", seq=0, id=chunk_id("Hello world. 你好，世界。"))


@pytest.mark.parametrize(("sentences", "joiner"), [(ENGLISH, " "), (CHINESE, "")])
def test_chunks_pack_whole_sentences_within_max_chars(sentences: list[str], joiner: str) -> None:
    chunks = chunk(joiner.join(sentences), max_chars=200, overlap_chars=0)
    assert len(chunks) > 1
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 200 for c in chunks)
    # every sentence whole in exactly one chunk, in order: no overlap asked, nothing cut
    found = [sentence for c in chunks for sentence in sentences_in(c.text, sentences)]
    assert found == sentences
    for c in chunks:
        assert c.text == joiner.join(sentences_in(c.text, sentences))


@pytest.mark.parametrize(("sentences", "joiner"), [(ENGLISH, " "), (CHINESE, "")])
def test_consecutive_chunks_share_trailing_whole_sentences(sentences: list[str], joiner: str) -> None:
    overlap = len(sentences[0]) + 10  # room for one sentence, not two
    chunks = chunk(joiner.join(sentences), max_chars=200, overlap_chars=overlap)
    for before, after in itertools.pairwise(chunks):
        shared = [s for s in sentences_in(before.text, sentences) if s in after.text]
        assert shared == [sentences_in(before.text, sentences)[-1]]
        assert after.text.startswith(shared[0])
    assert sentences_in("".join(c.text for c in chunks), sentences) == sentences


def test_chinese_sentences_end_without_a_space_and_closing_quotes_stay() -> None:
    first, quoted, last = "甲" * 40 + "。", "“" + "乙" * 20 + "。”", "丙" * 30 + "！"
    text = first + quoted + last
    assert [c.text for c in chunk(text, max_chars=65, overlap_chars=0)] == [first + quoted, last]
    assert [c.text for c in chunk(text, max_chars=50, overlap_chars=0)] == [first, quoted, last]
    # "；" ends a clause like a sentence: 16 of them fill 48 of 50 characters
    assert chunk("短句；" * 30, max_chars=50, overlap_chars=0)[0].text == "短句；" * 16


def test_english_periods_inside_numbers_and_before_lower_case_are_not_ends() -> None:
    first = "Pi is about 3.14 and e.g. this stays whole although it is long enough to need its own chunk here."
    second = "Version v1.2 ships today with many fixes that matter to operators running nightly reindexes."
    chunks = chunk(f"{first} {second}", max_chars=110, overlap_chars=0)
    assert [c.text for c in chunks] == [first, second]


def test_paragraphs_are_kept_apart_by_a_blank_line() -> None:
    [only] = chunk("First paragraph.\n\n\n  Second   paragraph.\nSame paragraph, next line.")
    assert only.text == "First paragraph.\n\nSecond   paragraph.\nSame paragraph, next line."


def test_a_sentence_longer_than_max_chars_is_cut_at_a_clause_or_space() -> None:
    long_english = " ".join(["word"] * 60) + "."  # 299 characters, no sentence end inside
    chunks = chunk(long_english, max_chars=100, overlap_chars=20)
    assert all(len(c.text) <= 100 for c in chunks)
    assert " ".join(c.text for c in chunks) == long_english
    assert all(set(c.text.split()) <= {"word", "word."} for c in chunks)  # no word cut in two

    long_chinese = "，".join(["定时任务"] * 40) + "。"
    pieces = [c.text for c in chunk(long_chinese, max_chars=60, overlap_chars=0)]
    assert all(len(piece) <= 60 for piece in pieces)
    assert all(piece.endswith(("，", "。")) for piece in pieces)
    assert "".join(pieces) == long_chinese


def test_lines_without_sentence_ends_are_cut_at_line_breaks() -> None:
    items = [f"- item number {n} of the list" for n in range(12)]
    chunks = chunk("\n".join(items), max_chars=100, overlap_chars=0)
    assert [c.text.split("\n") for c in chunks] == [items[0:3], items[3:6], items[6:9], items[9:12]]


def test_a_sentence_without_any_break_is_hard_cut_at_max_chars() -> None:
    text = "字" * 130
    assert [c.text for c in chunk(text, max_chars=50, overlap_chars=10)] == ["字" * 50, "字" * 50, "字" * 30]


def test_ids_ignore_whitespace_differences() -> None:
    a = chunk("Hello   world.\n\nSecond  paragraph.", metadata={"path": "a.md"})
    b = chunk("Hello world.\n\n\nSecond paragraph.  ", metadata={"path": "a.md"})
    assert [c.id for c in a] == [c.id for c in b]
    assert chunk_id("ＡＢＣ１２３ 知识库") == chunk_id("ABC123\t知识库")  # NFKC: full-width is ASCII


def test_ids_change_with_text_and_metadata_and_not_metadata_order() -> None:
    text = "The same words."
    base = chunk_id(text, {"path": "a.md", "title": "A"})
    assert base == chunk_id(text, {"title": "A", "path": "a.md"})
    assert base != chunk_id(text, {"path": "b.md", "title": "A"})
    assert base != chunk_id(text, {"path": "a.md"})
    assert base != chunk_id("Other words.", {"path": "a.md", "title": "A"})
    assert chunk_id(text) != base


def test_id_is_the_sha256_of_the_normalized_text_and_sorted_metadata() -> None:
    payload = '{"text":"a b","metadata":{"p":"x","q":"y"}}'
    assert chunk_id(" a \n b ", {"q": "y", "p": "x"}) == hashlib.sha256(payload.encode()).hexdigest()
    assert normalize("  a\u3000\n b ") == "a b"


def test_config_holds_the_defaults_and_chunks() -> None:
    config = ChunkingConfig()
    assert (config.max_chars, config.overlap_chars) == (800, 100)
    text = " ".join(ENGLISH)
    assert config.chunk(text, {"path": "x"}) == chunk(text, metadata={"path": "x"})


@pytest.mark.parametrize(
    ("max_chars", "overlap_chars", "message"),
    [
        (49, 0, "invalid max_chars 49: use a whole number of characters of at least 50 (800 is the default)"),
        (True, 0, "invalid max_chars True: use a whole number of characters of at least 50 (800 is the default)"),
        (100, -1, "invalid overlap_chars -1: use a whole number from 0 to less than max_chars (100)"),
        (100, 100, "invalid overlap_chars 100: use a whole number from 0 to less than max_chars (100)"),
    ],
)
def test_bad_sizes_are_refused_with_the_fix(max_chars: int, overlap_chars: int, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        chunk("text", max_chars=max_chars, overlap_chars=overlap_chars)
    assert str(caught.value) == message
    with pytest.raises(InvalidInput) as caught:
        ChunkingConfig(max_chars=max_chars, overlap_chars=overlap_chars)
    assert str(caught.value) == message


def test_metadata_values_must_be_strings() -> None:
    with pytest.raises(InvalidInput, match="keys and values must be strings"):
        chunk("text", metadata={"fetched": 1})  # type: ignore[dict-item]

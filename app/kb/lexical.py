"""The offline lexical embedder: the default of a knowledge base, with no model, no key and no network (pure).

It is *lexical*: it matches the characters and words a text shares with the query, not meanings. Synonyms do not
match ("car" finds nothing about "automobile"; "电脑" nothing about "计算机"), nor does a translation. Use a model
embedder when that matters; this one makes a knowledge base work out of the box, in Chinese as well as English.

A text's features, after NFKC (full-width → ASCII) and lower-casing:

- each run of CJK characters (Han, kana, Hangul; Chinese has no spaces between words) gives its character
  1-, 2- and 3-grams: "知识库" → 知 识 库 知识 识库 知识库;
- each other word (letters and digits) gives itself and the 3- to 5-grams of "<word>", so "index" also matches
  "indexes" and "reindex" in part.

Each feature is hashed with blake2b (stable across processes and versions, unlike Python's salted ``hash()``) into
one of ``dims`` buckets with a sign (signed feature hashing: collisions cancel out on average instead of piling
up), weighted by 1 + log(count) (a word said ten times is not ten times as relevant), and the vector is L2
normalized, so cosine similarity is a dot product. A text with no letter or digit gives the zero vector.

Features outnumber buckets (an 800-character chunk gives ~2,000), so unrelated features collide and add noise to
every similarity: a short query sharing one or two words with its answer can lose to a document it shares nothing
with. More ``dims`` means less noise: on this project's docs (80 chunks, 5-word queries; ``bench/lexical.py``)
hit@1 is 0.71 at 384 dimensions, 0.80 at 1,024 and 0.83 at 2,000.

The id names the algorithm and ``dims``: any change to features, hashing or weights must bump ``VERSION``, since
the embedding cache is keyed by (embedder id, chunk id) and must never mix vectors of two algorithms.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache

from app.errors import InvalidInput

VERSION = 1
DEFAULT_DIMS = 384
MIN_DIMS = 16
# pgvector indexes (HNSW, IVFFlat) take vectors of at most 2,000 dimensions.
MAX_DIMS = 2000

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
_TOKENS = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")


class LexicalEmbedder:
    """``LexicalEmbedder(dims=384)``: ``embed(texts)`` → one unit vector (or zero vector) of ``dims`` per text."""

    def __init__(self, dims: int = DEFAULT_DIMS) -> None:
        if not isinstance(dims, int) or isinstance(dims, bool) or not MIN_DIMS <= dims <= MAX_DIMS:
            raise InvalidInput(
                f"invalid dims {dims!r} for the lexical embedder: use a whole number from {MIN_DIMS} to {MAX_DIMS} "
                f"(the most pgvector indexes take); {DEFAULT_DIMS} is the default"
            )
        self.dims = dims
        self.id = f"lexical-v{VERSION}-{dims}"

    def __repr__(self) -> str:
        return f"LexicalEmbedder(dims={self.dims})"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise InvalidInput("LexicalEmbedder.embed takes a sequence of texts, not one string: pass [text]")
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        dims = self.dims
        vector = [0.0] * dims
        for feature, count in Counter(features(text)).items():
            bucket, sign = _slot(feature, dims)
            # most features occur once, and 1 + log(1) is 1
            vector[bucket] += sign if count == 1 else sign * (1.0 + math.log(count))
        norm = math.sqrt(sum(value * value for value in vector))
        return [value / norm for value in vector] if norm else vector


def features(text: str) -> Iterator[str]:
    """The hashed features of ``text``, repeated as often as they occur; prefixes keep the kinds apart."""
    for cjk, word in _TOKENS.findall(unicodedata.normalize("NFKC", text).lower()):
        if cjk:
            for size in (1, 2, 3):
                for start in range(len(cjk) - size + 1):
                    yield "c:" + cjk[start : start + size]
        else:
            yield "w:" + word
            padded = f"<{word}>"
            for size in (3, 4, 5):
                for start in range(len(padded) - size + 1):
                    yield "g:" + padded[start : start + size]


@lru_cache(maxsize=1 << 18)
def _slot(feature: str, dims: int) -> tuple[int, float]:
    """The bucket and sign of ``feature``: the same in every process (cached: a corpus repeats its vocabulary)."""
    value = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")
    return value % dims, (1.0 if value >> 63 else -1.0)

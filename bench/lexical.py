"""Time the offline lexical embedder and measure its retrieval on this project's docs (a script, not a test).

    python bench/lexical.py [--chunks 1000] [--dims 384 1024 2000]

1. speed: ``embed`` of ``--chunks`` synthetic chunks of 800 characters, English words and Chinese characters drawn
   at random (the worst case for its feature cache: real text repeats its vocabulary), cold and warm;
2. retrieval: README.md and docs/*.md chunked with the defaults; from each chunk, three runs of five words as
   queries whose expected source is that chunk; hit@1, hit@5 and MRR@5 per ``--dims``, through app.kb.gate.

No services needed. Timings vary with the machine's load; compare runs on one machine.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

from app.kb import lexical
from app.kb.chunking import chunk
from app.kb.gate import GoldenQuery, Retrieved, evaluate
from app.kb.lexical import LexicalEmbedder

ROOT = Path(__file__).resolve().parents[1]


def synthetic(count: int, rng: random.Random) -> dict[str, list[str]]:
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    han = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]

    def english() -> str:
        text = ""
        while len(text) < 800:
            text += rng.choice(words) + " "
        return text[:800]

    return {
        "english": [english() for _ in range(count)],
        "chinese": ["".join(rng.choice(han) for _ in range(800)) for _ in range(count)],
    }


def speed(count: int) -> None:
    for language, texts in synthetic(count, random.Random(1)).items():
        lexical._slot.cache_clear()
        embedder = LexicalEmbedder()
        started = time.perf_counter()
        embedder.embed(texts)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        embedder.embed(texts)
        warm = time.perf_counter() - started
        print(f"speed    {language}: {count} chunks of 800 characters in {cold:.2f} s cold, {warm:.2f} s warm")


def retrieval(dims: list[int]) -> None:
    chunks: list[tuple[str, str]] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for piece in chunk(path.read_text(), metadata={"path": path.name}):
            chunks.append((f"{path.name}#{piece.seq}", piece.text))
    rng = random.Random(3)
    golden: list[GoldenQuery] = []
    for source, text in chunks:
        words = re.findall(r"[A-Za-z]{4,}", text)
        for _ in range(3 if len(words) >= 10 else 0):
            start = rng.randrange(len(words) - 5)
            query = " ".join(words[start : start + 5])
            if query not in {golden_query.query for golden_query in golden}:
                golden.append(GoldenQuery(query, expected_sources=(source,)))
    for size in dims:
        embedder = LexicalEmbedder(dims=size)
        vectors = embedder.embed([text for _, text in chunks])
        asked = embedder.embed([golden_query.query for golden_query in golden])
        results = {}
        for golden_query, query_vector in zip(golden, asked, strict=True):
            scores = [sum(a * b for a, b in zip(query_vector, vector, strict=True)) for vector in vectors]
            ranked = sorted(range(len(chunks)), key=lambda at: -scores[at])[:5]
            results[golden_query.query] = [Retrieved(chunks[at][0], chunks[at][1]) for at in ranked]
        at_1 = evaluate(golden, results, k=1)
        at_5 = evaluate(golden, results, k=5)
        print(
            f"quality  dims {size}: {len(chunks)} chunks, {len(golden)} queries: hit@1 {at_1.hit_at_k:.2f}, "
            f"hit@5 {at_5.hit_at_k:.2f}, MRR@5 {at_5.mrr:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 1024, 2000])
    arguments = parser.parse_args()
    speed(arguments.chunks)
    retrieval(arguments.dims)


if __name__ == "__main__":
    main()

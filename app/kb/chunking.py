"""Chunking: a source's text → chunks of at most ``max_chars`` characters, each with a content id (pure).

Text splits into paragraphs (blank lines), paragraphs into sentences, and sentences pack greedily into chunks. A
sentence is never cut unless it alone is longer than ``max_chars``; then it is cut at a line break, a clause mark
or a space when one is near the limit, else hard at the limit. Consecutive chunks share up to ``overlap_chars`` of whole
trailing sentences, so an answer that straddles a boundary is whole in one chunk.

Sentence ends: ``。！？；`` end a sentence where they stand (Chinese puts no space after them); ``.!?;`` only
before whitespace or the end, so "3.14" and "v1.2" hold together, and a ``.`` followed by a lower-case word
("e.g. this", "approx. ten") is not an end either.

A chunk's id is the sha256 of its normalized text (NFKC, whitespace collapsed, stripped) and of the metadata that
changes what retrieval returns (the source's path or title; never a fetch time, which would re-embed everything
each reindex). It keys the embedding cache: a chunk whose words did not change keeps its vector. Two equal chunks
of one source share an id; their position (``seq``) tells them apart.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.errors import InvalidInput

MIN_MAX_CHARS = 50
NO_METADATA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class ChunkingConfig:
    """How a knowledge base cuts its sources; validated when built, so a bad definition fails at load time."""

    max_chars: int = 800
    overlap_chars: int = 100

    def __post_init__(self) -> None:
        validate(self.max_chars, self.overlap_chars)

    def chunk(self, text: str, metadata: Mapping[str, str] = NO_METADATA) -> list[Chunk]:
        return chunk(text, max_chars=self.max_chars, overlap_chars=self.overlap_chars, metadata=metadata)


@dataclass(frozen=True)
class Chunk:
    text: str  # as written (paragraph breaks kept), for the prompt; the id hashes its normalized form
    seq: int  # 0, 1, 2, … in the source's order
    id: str  # sha256 hex of the normalized text and the metadata


def validate(max_chars: int, overlap_chars: int) -> None:
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < MIN_MAX_CHARS:
        raise InvalidInput(
            f"invalid max_chars {max_chars!r}: use a whole number of characters of at least {MIN_MAX_CHARS} "
            "(800 is the default)"
        )
    if not isinstance(overlap_chars, int) or isinstance(overlap_chars, bool) or not 0 <= overlap_chars < max_chars:
        raise InvalidInput(
            f"invalid overlap_chars {overlap_chars!r}: use a whole number from 0 to less than max_chars ({max_chars})"
        )


def chunk(
    text: str, *, max_chars: int = 800, overlap_chars: int = 100, metadata: Mapping[str, str] = NO_METADATA
) -> list[Chunk]:
    """The chunks of ``text`` in order; none for blank text. ``metadata`` goes into every chunk's id."""
    validate(max_chars, overlap_chars)
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"invalid chunk metadata {key!r}: {value!r}: keys and values must be strings")
    texts = _pack(_units(text, max_chars), max_chars, overlap_chars)
    return [Chunk(text=body, seq=seq, id=chunk_id(body, metadata)) for seq, body in enumerate(texts)]


def normalize(text: str) -> str:
    """The form a chunk's id hashes: NFKC (full-width letters and digits → ASCII), whitespace runs → one space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def chunk_id(text: str, metadata: Mapping[str, str] = NO_METADATA) -> str:
    # JSON with sorted keys: one unambiguous encoding of (text, metadata), whatever order the metadata came in.
    payload = json.dumps(
        {"text": normalize(text), "metadata": dict(sorted(metadata.items()))},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an overlong one) and what joins it to the unit before it in a chunk."""

    text: str
    gap: str  # "\n\n" between paragraphs, " " or "\n" or "" inside one


_PARAGRAPHS = re.compile(r"\n[^\S\n]*\n\s*")
_CLOSERS = "\"'”’」』）》)]"
_CLOSING = f"[{re.escape(_CLOSERS)}]*"
_SENTENCE_END = re.compile(rf"[。！？；]+{_CLOSING}|[.!?;]+{_CLOSING}(?=\s|$)")
_LOWER_START = re.compile(r"\s+[a-z]")
# Clause marks: after a line break, the best places to cut an overlong sentence.
_CLAUSE = re.compile(r"[，、；：,;:]")


def _units(text: str, max_chars: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _PARAGRAPHS.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        gap = "\n\n"
        for sentence, before in _sentences(paragraph.strip()):
            first = True
            for piece, joiner in _cut(sentence, max_chars):
                units.append(_Unit(piece, gap if first else joiner))
                first = False
            gap = before
    if units:
        units[0] = _Unit(units[0].text, "")
    return units


def _sentences(paragraph: str) -> list[tuple[str, str]]:
    """(sentence, the gap before the next one) pairs; a gap is "" (Chinese), " " or "\\n"."""
    found: list[tuple[str, str]] = []
    start = 0
    for end in _SENTENCE_END.finditer(paragraph):
        if end.group().rstrip(_CLOSERS).endswith(".") and _LOWER_START.match(paragraph, end.end()):
            continue
        sentence = paragraph[start : end.end()].strip()
        after = end.end()
        while after < len(paragraph) and paragraph[after].isspace():
            after += 1
        if sentence:
            found.append((sentence, _gap(paragraph[end.end() : after])))
        start = after
    rest = paragraph[start:].strip()
    if rest:
        found.append((rest, ""))
    return found


def _gap(whitespace: str) -> str:
    return "\n" if "\n" in whitespace else (" " if whitespace else "")


def _cut(sentence: str, max_chars: int) -> list[tuple[str, str]]:
    """``sentence`` in pieces of at most ``max_chars``, with what joined each piece to the one before."""
    pieces: list[tuple[str, str]] = []
    rest, joiner = sentence, ""
    while len(rest) > max_chars:
        at = _break_at(rest[:max_chars])
        head, tail = rest[:at], rest[at:]
        pieces.append((head.rstrip(), joiner))
        joiner = _gap(head[len(head.rstrip()) :] + tail[: len(tail) - len(tail.lstrip())])
        rest = tail.lstrip()
    pieces.append((rest, joiner))
    return pieces


def _break_at(window: str) -> int:
    """Where to cut a window of an overlong sentence: at its last line break (a Markdown list or table with no
    sentence ends), else after a clause mark, else at a space, else hard at its end. Only a break in the window's
    second half counts, so pieces stay large."""
    half = len(window) // 2
    newline = window.rfind("\n")
    if newline > half:
        return newline
    clause = max((mark.end() for mark in _CLAUSE.finditer(window)), default=0)
    if clause > half:
        return clause
    space = window.rfind(" ")
    return space if space > half else len(window)


def _length(units: list[_Unit]) -> int:
    # The first unit's gap is not written: a chunk starts with its first sentence.
    return sum(len(unit.gap) + len(unit.text) for unit in units) - (len(units[0].gap) if units else 0)


def _pack(units: list[_Unit], max_chars: int, overlap_chars: int) -> list[str]:
    chunks: list[str] = []
    current: list[_Unit] = []
    for unit in units:
        if current and _length([*current, unit]) > max_chars:
            chunks.append(_join(current))
            # The overlap: the longest run of trailing whole sentences within overlap_chars that still leaves
            # room for the next sentence. It is never all of `current`, which did not fit with `unit`.
            tail: list[_Unit] = []
            for previous in reversed(current):
                candidate = [previous, *tail]
                if _length(candidate) > overlap_chars or _length([*candidate, unit]) > max_chars:
                    break
                tail = candidate
            current = tail
        current.append(unit)
    if current:
        chunks.append(_join(current))
    return chunks


def _join(units: list[_Unit]) -> str:
    return units[0].text + "".join(unit.gap + unit.text for unit in units[1:])

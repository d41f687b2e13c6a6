"""Embeddings on the wire: pgvector's text form (``[1,2.5,-3]``), checked before PostgreSQL sees it.

Text, cast with ``::vector`` in the SQL, needs no client codec (asyncpg knows no ``vector`` type, and registering
one per connection would fail on a database not migrated yet). A bad vector is refused here, naming what is
wrong, rather than by PostgreSQL's cast error: pgvector refuses NaN and infinities, and a zero vector has no
cosine distance (pgvector answers NaN, which would sort anywhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.errors import InvalidInput

Vector = tuple[float, ...]

# pgvector's HNSW index takes at most 2000 dimensions for the vector type.
MAX_DIMS = 2000


def check_dims(dims: int, what: str) -> None:
    if not 1 <= dims <= MAX_DIMS:
        raise InvalidInput(f"{what}: {dims} dimensions; pgvector's HNSW index takes 1 to {MAX_DIMS}")


def to_text(vector: Sequence[float], what: str, dims: int | None = None) -> str:
    """``vector`` as pgvector text; ``what`` names it in errors (``chunk 3 of docs/a.md``)."""
    if dims is not None and len(vector) != dims:
        raise InvalidInput(f"{what} has {len(vector)} dimensions, expected {dims}: embed it with the same embedder")
    check_dims(len(vector), what)
    for i, x in enumerate(vector):
        if not math.isfinite(x):
            raise InvalidInput(f"{what} holds {x} at index {i}: pgvector stores finite numbers only")
    if not any(vector):
        raise InvalidInput(f"{what} is all zeros: a zero vector has no cosine distance to anything")
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def from_text(text: str) -> Vector:
    """pgvector's text output (``[1,2.5,-3]``) as floats."""
    return tuple(float(x) for x in text.strip("[]").split(","))

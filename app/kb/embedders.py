"""What turns chunks into vectors for a reindex: the offline lexical embedder, or a remote model.

An :class:`Embedder` has an ``id`` (the embedding cache and every generation are keyed by it, so two embedders
that give different vectors must never share one), ``dims`` (None until a remote model's first answer tells
it, unless declared) and ``embed(texts)``.

    lexical     LexicalEmbedder (app/kb/lexical.py) run in a thread; id lexical-v1-<dims>
    openai      RemoteEmbedder over LLM.embed: any OpenAI-compatible /embeddings (PUNCHCLOCK_EMBEDDING_*);
                id openai:<host of the base URL>:<model>, so another model or provider is another embedder

A remote failure keeps :class:`LLM`'s meaning: a 4xx is a PermanentError with the server's message (a model
name it does not know, an input too long), timeouts and 5xx TransientError after the client's retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import httpx

from app.ai.config import LLMConfig
from app.ai.llm import LLM
from app.errors import InvalidInput
from app.kb.lexical import DEFAULT_DIMS, LexicalEmbedder
from app.transient import PermanentError

DEFAULT_BATCH_SIZE = 64
# Below this many texts the lexical embedder is faster inline than the thread hand-off costs.
_INLINE_TEXTS = 8


class Embedder(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def dims(self) -> int | None:
        """Its vectors' dimensions; None while unknown (a remote model not asked yet)."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class Lexical:
    """The offline default (no key, no network); embedding is CPU work, done in a thread for large batches so
    the worker's event loop keeps answering heartbeats and other runs meanwhile."""

    def __init__(self, dims: int = DEFAULT_DIMS) -> None:
        self._inner = LexicalEmbedder(dims)

    def __repr__(self) -> str:
        return f"Lexical(dims={self._inner.dims})"

    @property
    def id(self) -> str:
        return self._inner.id

    @property
    def dims(self) -> int:
        return self._inner.dims

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if len(texts) <= _INLINE_TEXTS:
            return self._inner.embed(texts)
        return await asyncio.to_thread(self._inner.embed, texts)


def remote_embedder_id(host: str, model: str) -> str:
    """A remote model's embedder id: another model or provider is another embedder (the cache is keyed by it)."""
    return f"openai:{host}:{model}"


class RemoteEmbedder:
    """``RemoteEmbedder(llm, base_url, model, batch_size=64, dims=None)``: ``llm.embed`` in requests of at most
    ``batch_size`` texts (providers cap inputs per request: OpenAI 2,048, DashScope 10). ``base_url`` and
    ``model`` are the embeddings endpoint's, which name the embedder; ``dims`` declared is checked against every
    answer, else learned from the first one."""

    def __init__(
        self,
        llm: LLM,
        base_url: str,
        model: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dims: int | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInput(f"invalid embedding batch_size {batch_size!r}: use a whole number of 1 or more (64)")
        if not model:
            raise InvalidInput("the remote embedder needs a model: set PUNCHCLOCK_EMBEDDING_MODEL")
        host = httpx.URL(base_url).host if base_url else ""
        if not host:
            raise InvalidInput(
                f'the remote embedder\'s base URL "{base_url}" has no host: set PUNCHCLOCK_EMBEDDING_BASE_URL'
            )
        self._llm = llm
        self._model = model
        self._batch_size = batch_size
        self._dims = dims
        self._id = remote_embedder_id(host, model)

    def __repr__(self) -> str:
        return f"RemoteEmbedder({self._id!r}, batch_size={self._batch_size}, dims={self._dims})"

    @property
    def id(self) -> str:
        return self._id

    @property
    def dims(self) -> int | None:
        return self._dims

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            result = await self._llm.embed(texts[start : start + self._batch_size], model=self._model)
            for vector in result.vectors:
                self._check(vector)
            vectors.extend(result.vectors)
        return vectors

    def _check(self, vector: list[float]) -> None:
        if self._dims is None:
            self._dims = len(vector)
        elif len(vector) != self._dims:
            # A model swapped behind the same name, or a provider truncating: mixing them would corrupt search.
            raise PermanentError(
                f"the embedding model {self._id} answered a vector of {len(vector)} dimensions, expected"
                f" {self._dims}: if the model changed, give it another name (or declare its dims) and reindex"
            )


EMBEDDERS = ("lexical", "openai")


def make_embedder(
    kind: str,
    http: httpx.AsyncClient,
    config: LLMConfig,
    *,
    dims: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Embedder:
    """The embedder a knowledge base's definition names (``"lexical"`` or ``"openai"``). ``openai`` reads the
    embeddings endpoint of ``config`` (PUNCHCLOCK_EMBEDDING_*): a ConfigurationError naming what to set when
    none is configured."""
    if kind == "lexical":
        return Lexical(dims if dims is not None else DEFAULT_DIMS)
    if kind == "openai":
        endpoint = config.embeddings
        model = endpoint.model_for(None)
        return RemoteEmbedder(LLM(http, config), endpoint.base_url, model, batch_size=batch_size, dims=dims)
    raise InvalidInput(f'unknown embedder "{kind}": use one of {", ".join(EMBEDDERS)}')

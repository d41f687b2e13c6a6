"""A knowledge base as declared: its sources, how it chunks and embeds, its golden queries and gate (pure).

    KnowledgeBase(
        "handbook",
        sources=[Folder("docs", "**/*.md"), Urls(["https://example.com/faq.html"])],
        chunking=ChunkingConfig(max_chars=800),
        embedder="lexical",
        golden=[GoldenQuery("how do I reset my password", expected_sources=("account.md",))],
        gate=Gate(min_hit_at_k=0.8),
        keep_generations=3,
        notify=["slack:env:SLACK_WEBHOOK"],
        dify=DifyTarget("https://api.dify.ai", "<dataset id>", api_key_env="DIFY_HANDBOOK_KEY"),  # optional
    )

Everything is checked when built, so a bad definition fails where it is written, naming the value and the fix.
``to_json`` / ``from_json`` are the form stored in ``knowledge_bases.definition``; secrets never are: ``Urls``
names the environment variables holding its headers, ``S3`` reads ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` from the worker's environment at each scan, ``DifyTarget`` names the variable holding the
dataset API key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from app.ai.dify import check_base_url
from app.errors import ConfigurationError, InvalidInput
from app.kb.chunking import ChunkingConfig
from app.kb.embedders import EMBEDDERS
from app.kb.gate import Gate, GoldenQuery
from app.kb.lexical import MAX_DIMS
from app.kb.sources.base import Source
from app.kb.sources.folder import FolderSource
from app.kb.sources.http import HttpSource
from app.kb.sources.s3 import S3Source
from app.notify.targets import parse_target
from app.settings import ENV_NAME

# The same names as schedules': they end up in lock keys ("reindex:{kb}"), CLI arguments and log fields.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
DEFAULT_GOLDEN_K = 5


def _is_http_url(text: str) -> bool:
    return bool(re.match(r"^https?://[^/\s?#]+", text))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid {what} {value!r}: use a non-empty string")
    return value


def _to_tuple(value: Any, what: str) -> tuple[Any, ...]:
    # A lone string is a sequence too, of characters: never what the author meant.
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInput(f"invalid {what} {value!r}: use a list")
    return tuple(value)


# --- sources -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """Files under ``path`` matching ``glob`` (``**/*.md``); a relative path is read from the worker's
    working directory."""

    path: str
    glob: str = "**/*"
    kind: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        # A Path is welcome; stored as text, the form the definition's JSON keeps.
        path = str(self.path) if isinstance(self.path, Path) else self.path
        object.__setattr__(self, "path", _text(path, "folder path"))
        _text(self.glob, f"glob of folder {self.path}")

    def build(self) -> Source:
        return FolderSource(Path(self.path), self.glob)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "glob": self.glob}


@dataclass(frozen=True)
class Urls:
    """Web pages or files fetched over HTTP(S). ``headers_env`` maps a header to the environment variable holding
    its value (``{"Authorization": "DOCS_TOKEN"}``), so no secret is stored with the definition."""

    urls: Sequence[str]
    headers_env: Mapping[str, str] = field(default_factory=dict)
    kind: ClassVar[str] = "urls"

    def __post_init__(self) -> None:
        urls = _to_tuple(self.urls, "urls")
        if not urls:
            raise InvalidInput("a Urls source needs at least one URL")
        for url in urls:
            if not isinstance(url, str) or not _is_http_url(url):
                raise InvalidInput(f"invalid URL {url!r} of a Urls source: use an http:// or https:// URL")
        if len(set(urls)) != len(urls):
            duplicate = next(url for url in urls if urls.count(url) > 1)
            raise InvalidInput(f"the URL {duplicate} is listed twice in a Urls source: keep one")
        if not isinstance(self.headers_env, Mapping):
            raise InvalidInput(f"invalid headers_env {self.headers_env!r}: use a mapping of header → variable name")
        for header, variable in self.headers_env.items():
            if not isinstance(header, str) or not header.strip():
                raise InvalidInput(f"invalid header name {header!r} in headers_env: use a non-empty string")
            if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
                raise InvalidInput(
                    f'invalid environment variable name {variable!r} for header "{header}": headers_env names the'
                    " variable holding the value (DOCS_TOKEN), never the value itself"
                )
        object.__setattr__(self, "urls", urls)
        object.__setattr__(self, "headers_env", dict(self.headers_env))

    def build(self) -> Source:
        """The source, with each header's value read now from its environment variable (never stored)."""
        headers = {}
        for header, variable in self.headers_env.items():
            value = os.environ.get(variable)
            if not value:
                raise ConfigurationError(
                    f'header "{header}" of a Urls source reads the environment variable {variable}, which is not'
                    " set in this process: set it where the workers run"
                )
            headers[header] = value
        return HttpSource(list(self.urls), headers=headers)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "urls": list(self.urls), "headers_env": dict(self.headers_env)}


@dataclass(frozen=True)
class S3:
    """Objects of ``bucket`` under ``prefix``; ``endpoint_url`` for S3-compatible stores (MinIO, OSS, COS)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    kind: ClassVar[str] = "s3"

    def __post_init__(self) -> None:
        _text(self.bucket, "S3 bucket")
        if not isinstance(self.prefix, str):
            raise InvalidInput(f'invalid S3 prefix {self.prefix!r}: use a string ("" for the whole bucket)')
        if self.endpoint_url is not None and not _is_http_url(self.endpoint_url):
            raise InvalidInput(f"invalid S3 endpoint_url {self.endpoint_url!r}: use an http:// or https:// URL")
        if self.region is not None:
            _text(self.region, "S3 region")

    def build(self) -> Source:
        # credentials are read by the source at each scan, from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
        if self.region is None:
            return S3Source(self.bucket, self.prefix, endpoint_url=self.endpoint_url)
        return S3Source(self.bucket, self.prefix, endpoint_url=self.endpoint_url, region=self.region)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
        }


SourceSpec = Folder | Urls | S3
_SPECS: dict[str, type[Folder] | type[Urls] | type[S3]] = {spec.kind: spec for spec in (Folder, Urls, S3)}


def source_from_json(data: Any) -> SourceSpec:
    if not isinstance(data, Mapping) or data.get("kind") not in _SPECS:
        raise InvalidInput(f"invalid source {data!r}: use an object whose kind is one of {', '.join(_SPECS)}")
    fields = {key: value for key, value in data.items() if key != "kind"}
    try:
        return _SPECS[data["kind"]](**fields)
    except TypeError as error:
        raise InvalidInput(f"invalid {data['kind']} source {data!r}: {error}") from None


# --- a Dify dataset the knowledge base is pushed to --------------------------------------------------------------

# Dify's retrieval methods (its RetrievalModel.search_method); an "economy" dataset answers keyword_search only.
DIFY_SEARCH_METHODS = ("semantic_search", "full_text_search", "hybrid_search", "keyword_search")
DIFY_INDEXING_TECHNIQUES = ("high_quality", "economy")


@dataclass(frozen=True)
class DifyTarget:
    """A Dify dataset (knowledge base) that receives the knowledge base's documents at each reindex
    (``app/kb/dify_sync.py``). ``base_url``: the Service API root without ``/v1`` (``https://api.dify.ai`` or a
    self-hosted address). ``api_key_env``: the name of the environment variable holding the dataset API key
    (``dataset-…``), read at each reindex, never stored. ``gate``: also score the golden queries through Dify's
    retrieve API, and fail the reindex when they miss there. ``search_method`` and ``indexing_technique`` are sent
    to Dify as they are (``indexing_technique`` only matters for a dataset that has none yet)."""

    base_url: str
    dataset_id: str
    api_key_env: str
    gate: bool = True
    search_method: str = "semantic_search"
    indexing_technique: str = "high_quality"

    def __post_init__(self) -> None:
        where = f"Dify target {self.base_url!r}"
        _text(self.base_url, "Dify base URL")
        check_base_url(self.base_url, where=where, shown="the base URL", key_env=self.api_key_env)
        dataset = _text(self.dataset_id, "Dify dataset_id")
        if "/" in dataset or dataset != dataset.strip():
            raise InvalidInput(f"{where}: invalid dataset_id {dataset!r}: use the dataset's id as Dify shows it")
        if not isinstance(self.api_key_env, str) or not ENV_NAME.fullmatch(self.api_key_env):
            raise InvalidInput(
                f"{where}: api_key_env {self.api_key_env!r} is not an environment variable name (letters, digits"
                " and _, e.g. DIFY_HANDBOOK_KEY); give the variable's name, never the key"
            )
        if not isinstance(self.gate, bool):
            raise InvalidInput(f"{where}: gate {self.gate!r}: use True or False")
        if self.search_method not in DIFY_SEARCH_METHODS:
            raise InvalidInput(
                f"{where}: search_method {self.search_method!r}: use one of {', '.join(DIFY_SEARCH_METHODS)}"
            )
        if self.indexing_technique not in DIFY_INDEXING_TECHNIQUES:
            raise InvalidInput(
                f"{where}: indexing_technique {self.indexing_technique!r}: use one of"
                f" {', '.join(DIFY_INDEXING_TECHNIQUES)}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "dataset_id": self.dataset_id,
            "api_key_env": self.api_key_env,
            "gate": self.gate,
            "search_method": self.search_method,
            "indexing_technique": self.indexing_technique,
        }

    @classmethod
    def from_json(cls, data: Any) -> DifyTarget:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"invalid Dify target {data!r}: use an object with base_url, dataset_id, api_key_env")
        try:
            return cls(**data)
        except TypeError as error:
            raise InvalidInput(f"invalid Dify target {data!r}: {error}") from None


# --- the knowledge base ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    sources: Sequence[SourceSpec]
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    embedder: str = "lexical"
    # The embedder's dimensions: the lexical one's (384 by default); a remote model's if declared, else learned.
    dims: int | None = None
    golden: Sequence[GoldenQuery] = ()
    gate: Gate = field(default_factory=Gate)
    golden_k: int = DEFAULT_GOLDEN_K  # the depth hit@k, MRR and recall@k are scored at
    keep_generations: int = 3
    notify: Sequence[str] = ()
    dify: DifyTarget | None = None  # also push the documents to this Dify dataset (and gate through it)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidInput(
                f"invalid knowledge base name {self.name!r}: use 1-100 letters, digits and _ . : - , starting with"
                " a letter or digit"
            )
        what = f'knowledge base "{self.name}"'
        sources = _to_tuple(self.sources, f"sources of {what}")
        if not sources:
            raise InvalidInput(f"{what} has no sources: add Folder(...), Urls([...]) or S3(...)")
        for source in sources:
            if not isinstance(source, Folder | Urls | S3):
                raise InvalidInput(f"invalid source {source!r} of {what}: use Folder(...), Urls([...]) or S3(...)")
        if len(set(map(repr, sources))) != len(sources):
            raise InvalidInput(f"{what} lists a source twice: keep one")
        if not isinstance(self.chunking, ChunkingConfig):
            raise InvalidInput(f"invalid chunking {self.chunking!r} of {what}: use ChunkingConfig(...)")
        if self.embedder not in EMBEDDERS:
            raise InvalidInput(f'invalid embedder {self.embedder!r} of {what}: use "lexical" or "openai"')
        if self.dims is not None and (
            not isinstance(self.dims, int) or isinstance(self.dims, bool) or not 1 <= self.dims <= MAX_DIMS
        ):
            raise InvalidInput(f"invalid dims {self.dims!r} of {what}: use 1 to {MAX_DIMS}, or leave it out")
        golden = _to_tuple(self.golden, f"golden queries of {what}")
        seen: set[str] = set()
        for query in golden:
            if not isinstance(query, GoldenQuery):
                raise InvalidInput(f"invalid golden query {query!r} of {what}: use GoldenQuery(...)")
            if query.query in seen:
                raise InvalidInput(f'golden query "{query.query}" is listed twice in {what}: keep one')
            seen.add(query.query)
        if not isinstance(self.gate, Gate):
            raise InvalidInput(f"invalid gate {self.gate!r} of {what}: use Gate(...)")
        for name, value, least in (("golden_k", self.golden_k, 1), ("keep_generations", self.keep_generations, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InvalidInput(f"invalid {name} {value!r} of {what}: use a whole number of {least} or more")
        notify = _to_tuple(self.notify, f"notify of {what}")
        for entry in notify:
            if not isinstance(entry, str):
                raise InvalidInput(f"invalid notify target {entry!r} of {what}: use a string such as slack:https://…")
            # The link-local rule (PUNCHCLOCK_NOTIFY_ALLOW_LINK_LOCAL) is the defining command's to apply: a
            # definition read back from the database must always load.
            parse_target(entry, allow_link_local=True)
        if self.dify is not None and not isinstance(self.dify, DifyTarget):
            raise InvalidInput(f"invalid dify {self.dify!r} of {what}: use DifyTarget(...) or leave it out")
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "golden", golden)
        object.__setattr__(self, "notify", notify)

    def build_sources(self) -> list[Source]:
        return [spec.build() for spec in self.sources]

    def to_json(self) -> dict[str, Any]:
        gate = self.gate
        return {
            "name": self.name,
            "sources": [spec.to_json() for spec in self.sources],
            "chunking": {"max_chars": self.chunking.max_chars, "overlap_chars": self.chunking.overlap_chars},
            "embedder": self.embedder,
            "dims": self.dims,
            "golden": [
                {
                    "query": q.query,
                    "expected_sources": list(q.expected_sources),
                    "expected_keywords": list(q.expected_keywords),
                }
                for q in self.golden
            ],
            "gate": {
                "min_hit_at_k": gate.min_hit_at_k,
                "min_mrr": gate.min_mrr,
                "min_recall_at_k": gate.min_recall_at_k,
                "no_regression": gate.no_regression,
                "tolerance": gate.tolerance,
            },
            "golden_k": self.golden_k,
            "keep_generations": self.keep_generations,
            "notify": list(self.notify),
            # only when set: definitions stored before Dify targets existed read back, and compare, unchanged
            **({"dify": self.dify.to_json()} if self.dify is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> KnowledgeBase:
        """The definition ``to_json`` stored; InvalidInput naming what is wrong with one that does not load."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"invalid knowledge base definition {data!r}: expected a JSON object")
        name = data.get("name")
        try:
            return cls(
                name=name,  # type: ignore[arg-type]  # checked by __post_init__
                sources=[source_from_json(s) for s in _to_tuple(data.get("sources", ()), "sources")],
                chunking=ChunkingConfig(**data.get("chunking", {})),
                embedder=data.get("embedder", "lexical"),
                dims=data.get("dims"),
                golden=[
                    GoldenQuery(
                        q["query"],
                        expected_sources=tuple(q.get("expected_sources", ())),
                        expected_keywords=tuple(q.get("expected_keywords", ())),
                    )
                    for q in _to_tuple(data.get("golden", ()), "golden")
                ],
                gate=Gate(**data.get("gate", {})),
                golden_k=data.get("golden_k", DEFAULT_GOLDEN_K),
                keep_generations=data.get("keep_generations", 3),
                notify=data.get("notify", ()),
                dify=DifyTarget.from_json(data["dify"]) if data.get("dify") is not None else None,
            )
        except (TypeError, KeyError, AttributeError) as error:
            raise InvalidInput(f'invalid definition of knowledge base "{name}": {error!r}') from None

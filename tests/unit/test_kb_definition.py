"""A knowledge base's definition: checked when built, naming the bad value; to JSON and back unchanged (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidInput
from app.kb.chunking import ChunkingConfig
from app.kb.definition import S3, Folder, KnowledgeBase, Urls, source_from_json
from app.kb.gate import Gate, GoldenQuery
from app.kb.sources.folder import FolderSource

FOLDER = {"kind": "folder", "path": "a"}


def full() -> KnowledgeBase:
    return KnowledgeBase(
        "handbook.v2",
        sources=[
            Folder(Path("docs"), "**/*.md"),
            Urls(["https://example.com/faq.html"], headers_env={"Authorization": "DOCS_TOKEN"}),
            S3("bucket", "kb/", endpoint_url="https://minio.internal:9000", region="cn-north-1"),
        ],
        chunking=ChunkingConfig(max_chars=600, overlap_chars=50),
        embedder="openai",
        dims=1024,
        golden=[
            GoldenQuery("如何重置密码", expected_sources=("account.md",)),
            GoldenQuery("invoice date", expected_keywords=("invoice",)),
        ],
        gate=Gate(min_hit_at_k=0.8, tolerance=0.1),
        golden_k=3,
        keep_generations=5,
        notify=["slack:https://hooks.slack.com/services/T/B/x", "mailto:ops@example.com"],
    )


def test_a_definition_goes_to_json_and_back_unchanged() -> None:
    kb = full()

    stored = json.loads(json.dumps(kb.to_json()))

    assert KnowledgeBase.from_json(stored) == kb
    assert stored["sources"][0] == {"kind": "folder", "path": "docs", "glob": "**/*.md"}
    assert stored["sources"][1]["headers_env"] == {"Authorization": "DOCS_TOKEN"}  # the variable, never its value


def test_defaults() -> None:
    kb = KnowledgeBase("docs", sources=[Folder("docs")])

    assert (kb.embedder, kb.dims, kb.keep_generations, kb.golden_k, kb.golden, kb.notify) == (
        "lexical",
        None,
        3,
        5,
        (),
        (),
    )
    assert kb.chunking == ChunkingConfig() and kb.gate == Gate()
    assert KnowledgeBase.from_json({"name": "docs", "sources": [{"kind": "folder", "path": "docs"}]}) == kb


def test_a_folder_spec_builds_a_folder_source() -> None:
    [source] = KnowledgeBase("docs", sources=[Folder("/srv/docs", "*.md")]).build_sources()

    assert isinstance(source, FolderSource)
    assert (source.root, source.glob) == (Path("/srv/docs"), "*.md")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "my kb"}, "invalid knowledge base name 'my kb'"),
        ({"name": ""}, "invalid knowledge base name ''"),
        ({"name": "-x"}, "starting with a letter or digit"),
        ({"sources": []}, 'knowledge base "docs" has no sources: add Folder'),
        ({"sources": "docs"}, "invalid sources of knowledge base \"docs\" 'docs': use a list"),
        ({"sources": ["docs"]}, "invalid source 'docs'"),
        ({"sources": [Folder("a"), Folder("a")]}, "lists a source twice"),
        ({"embedder": "bert"}, "invalid embedder 'bert'"),
        ({"dims": 0}, "invalid dims 0"),
        ({"dims": 4096}, "use 1 to 2000"),
        ({"keep_generations": 0}, 'invalid keep_generations 0 of knowledge base "docs": use a whole number of 1'),
        ({"keep_generations": True}, "invalid keep_generations True"),
        ({"golden_k": 0}, "invalid golden_k 0"),
        ({"golden": [GoldenQuery("q", expected_keywords=("a",))] * 2}, 'golden query "q" is listed twice'),
        ({"golden": ["q"]}, "invalid golden query 'q'"),
        ({"gate": {"min_mrr": 0.5}}, "use Gate(...)"),
        ({"chunking": {"max_chars": 100}}, "use ChunkingConfig(...)"),
        ({"notify": ["pager:123"]}, 'invalid notify target "pager:123"'),
        ({"notify": "slack:https://x.example"}, "use a list"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_value(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "docs", "sources": [Folder("docs")], **changes}

    with pytest.raises(InvalidInput) as raised:
        KnowledgeBase(**fields)

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Folder(""), "invalid folder path ''"),
        (lambda: Folder("docs", ""), "invalid glob of folder docs"),
        (lambda: Urls([]), "a Urls source needs at least one URL"),
        (lambda: Urls("https://example.com"), "use a list"),
        (lambda: Urls(["ftp://example.com/a"]), "invalid URL 'ftp://example.com/a'"),
        (lambda: Urls(["https://a.example", "https://a.example"]), "https://a.example is listed twice"),
        (lambda: Urls(["https://a.example"], headers_env={"Authorization": "Bearer sk-1"}), "never the value"),
        (lambda: S3(""), "invalid S3 bucket ''"),
        (lambda: S3("b", endpoint_url="minio:9000"), "invalid S3 endpoint_url 'minio:9000'"),
    ],
)
def test_a_bad_source_is_refused(build: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        build()

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object"),
        ({"name": "docs", "sources": [{"kind": "ftp"}]}, "kind is one of folder, urls, s3"),
        ({"name": "docs", "sources": [{"kind": "folder", "path": "a", "depth": 2}]}, "invalid folder source"),
        (
            {"name": "docs", "sources": [{"kind": "folder", "path": "a"}], "gate": {"floor": 1}},
            'of knowledge base "docs"',
        ),
        ({"name": "docs", "sources": [{"kind": "folder", "path": "a"}], "golden": [{"q": "x"}]}, "'query'"),
    ],
)
def test_a_stored_definition_that_does_not_load_says_why(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        KnowledgeBase.from_json(data)

    assert message in str(raised.value)


def test_sources_read_back_by_kind() -> None:
    assert source_from_json({"kind": "s3", "bucket": "b"}) == S3("b")
    assert source_from_json({"kind": "urls", "urls": ["https://a.example/x.md"]}) == Urls(["https://a.example/x.md"])


def test_urls_build_reads_header_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.errors import ConfigurationError
    from app.kb.definition import Urls
    from app.kb.sources.http import HttpSource

    spec = Urls(["https://docs.example.com/a.md"], headers_env={"X-Api-Key": "DOCS_TOKEN"})
    monkeypatch.delenv("DOCS_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="DOCS_TOKEN, which is not set"):
        spec.build()
    monkeypatch.setenv("DOCS_TOKEN", "token-value-123")
    assert isinstance(spec.build(), HttpSource)
    assert "token-value-123" not in str(spec.to_json())  # the definition stores the variable's name only


def test_s3_build_makes_an_s3_source() -> None:
    from app.kb.definition import S3
    from app.kb.sources.s3 import S3Source

    built = S3("docs", "policies/", endpoint_url="http://127.0.0.1:9000", region="cn-north-1").build()
    assert isinstance(built, S3Source)
    assert "docs" in built.describe()

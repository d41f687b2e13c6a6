"""What the registry stores for a definition: the embedder's id and dimensions, checked before any write."""

from __future__ import annotations

import pytest

from app.ai.config import LLMConfig
from app.boot import load_code_kbs
from app.errors import ConfigurationError, InvalidInput
from app.kb.definition import Folder, KnowledgeBase
from app.kb.registry import check_unique, embedder_identity
from app.settings import Settings

NOTHING = LLMConfig.from_settings(Settings())
REMOTE = LLMConfig.from_settings(
    Settings(embedding_base_url="https://api.example.com/v1", embedding_model="text-embedding-3-small")
)


def kb(**kwargs: object) -> KnowledgeBase:
    return KnowledgeBase("handbook", sources=[Folder("docs")], **kwargs)  # type: ignore[arg-type]


def test_lexical_identity_defaults_to_384_dimensions() -> None:
    assert embedder_identity(kb(), NOTHING) == ("lexical-v1-384", 384)
    assert embedder_identity(kb(dims=128), NOTHING) == ("lexical-v1-128", 128)


def test_openai_needs_declared_dims_and_a_configured_endpoint() -> None:
    with pytest.raises(InvalidInput, match='"handbook" uses the openai embedder without dims: declare'):
        embedder_identity(kb(embedder="openai"), REMOTE)
    assert embedder_identity(kb(embedder="openai", dims=1536), REMOTE) == (
        "openai:api.example.com:text-embedding-3-small",
        1536,
    )
    with pytest.raises(ConfigurationError, match="PUNCHCLOCK_EMBEDDING"):
        embedder_identity(kb(embedder="openai", dims=1536), NOTHING)


def test_the_stored_definition_loads_back_equal() -> None:
    assert KnowledgeBase.from_json(kb(dims=128, keep_generations=2).to_json()) == kb(dims=128, keep_generations=2)


def test_a_name_declared_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="declares handbook more than once"):
        check_unique([kb(), kb(dims=64)])


def test_boot_refuses_a_bad_knowledge_base_naming_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    module = types.ModuleType("kb_boot_schedules")
    module.KNOWLEDGE_BASES = [kb(embedder="openai")]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kb_boot_schedules", module)
    with pytest.raises(ConfigurationError, match=r"kb_boot_schedules\.py: .*without dims"):
        load_code_kbs("kb_boot_schedules", REMOTE)
    module.KNOWLEDGE_BASES = ["handbook"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="KNOWLEDGE_BASES must be a list of "):
        load_code_kbs("kb_boot_schedules", REMOTE)
    module.KNOWLEDGE_BASES = [kb()]  # type: ignore[attr-defined]
    assert load_code_kbs("kb_boot_schedules", REMOTE) == [kb()]
    assert load_code_kbs("", REMOTE) == []

"""LLM settings: endpoints, fallbacks, provider names, and what is refused at start-up."""

from __future__ import annotations

import pytest

from app.ai import Endpoint, LLMConfig
from app.ai.config import provider_name
from app.errors import ConfigurationError
from app.settings import Settings


def test_nothing_configured_is_valid_until_a_call() -> None:
    config = LLMConfig.from_settings(Settings())

    assert (config.chat.base_url, config.embeddings.base_url, config.timeout_seconds) == ("", "", 60.0)
    assert not config.trace_content
    assert config.secrets == ()


def test_settings_come_from_punchclock_variables() -> None:
    settings = Settings.from_env(
        {
            "PUNCHCLOCK_LLM_BASE_URL": "https://api.deepseek.com/v1/",
            "PUNCHCLOCK_LLM_API_KEY": "sk-chat",
            "PUNCHCLOCK_LLM_MODEL": "deepseek-chat",
            "PUNCHCLOCK_LLM_TIMEOUT_SECONDS": "30",
            "PUNCHCLOCK_EMBEDDING_MODEL": "text-embedding-3-small",
            "PUNCHCLOCK_TRACE_CONTENT": "true",
        }
    )

    config = LLMConfig.from_settings(settings)

    assert config.chat == Endpoint("LLM", "PUNCHCLOCK_LLM", "https://api.deepseek.com/v1", "sk-chat", "deepseek-chat")
    assert config.embeddings.base_url == "https://api.deepseek.com/v1"
    assert config.embeddings.api_key == "sk-chat"  # same base URL: same key
    assert (config.timeout_seconds, config.trace_content) == (30.0, True)


def test_the_llm_key_never_goes_to_another_embeddings_host() -> None:
    config = LLMConfig.from_settings(
        Settings(
            llm_base_url="https://api.openai.com/v1",
            llm_api_key="sk-openai",
            embedding_base_url="http://127.0.0.1:11434/v1",
        )
    )

    assert config.embeddings.api_key == ""
    assert config.embeddings.headers() == {"Accept": "application/json"}
    assert config.chat.headers()["Authorization"] == "Bearer sk-openai"


def test_embeddings_may_have_their_own_key() -> None:
    config = LLMConfig.from_settings(
        Settings(llm_api_key="sk-a", embedding_base_url="https://dashscope.aliyuncs.com/v1", embedding_api_key="sk-b")
    )

    assert config.embeddings.api_key == "sk-b"
    assert config.secrets == ("sk-a", "sk-b")


def test_keys_are_not_in_reprs() -> None:
    settings = Settings(llm_api_key="sk-hidden", embedding_api_key="sk-hidden-too")

    assert "sk-hidden" not in repr(settings)
    assert "sk-hidden" not in repr(LLMConfig.from_settings(settings))


@pytest.mark.parametrize("value", ["api.openai.com/v1", "ftp://example.com/v1", "http://", "localhost:11434"])
def test_a_base_url_that_cannot_work_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"PUNCHCLOCK_LLM_BASE_URL=.*must be an http:// or https:// URL"):
        LLMConfig.from_settings(Settings(llm_base_url=value))


def test_a_refused_url_does_not_show_its_secrets() -> None:
    with pytest.raises(ConfigurationError) as raised:
        LLMConfig.from_settings(Settings(embedding_base_url="ftp://user:sk-secret@example.com/v1?key=sk-secret"))

    assert "PUNCHCLOCK_EMBEDDING_BASE_URL" in str(raised.value)
    assert "sk-secret" not in str(raised.value)


def test_the_timeout_must_be_a_second_or_more() -> None:
    with pytest.raises(ConfigurationError, match=r"PUNCHCLOCK_LLM_TIMEOUT_SECONDS=0: must be 1 or more \(default 60\)"):
        LLMConfig.from_settings(Settings(llm_timeout_seconds=0))


def test_urls_keep_the_base_path_and_query() -> None:
    endpoint = Endpoint("LLM", "PUNCHCLOCK_LLM", "https://dashscope.aliyuncs.com/compatible-mode/v1?region=cn")

    assert str(endpoint.url("chat/completions")) == (
        "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions?region=cn"
    )
    assert (endpoint.server_address, endpoint.server_port) == ("dashscope.aliyuncs.com", 443)
    assert Endpoint("LLM", "X", "http://ollama:11434/v1").server_port == 11434
    assert Endpoint("LLM", "X", "http://vllm/v1").server_port == 80


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://api.deepseek.com/v1", "deepseek"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "dashscope"),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "dashscope"),
        ("http://127.0.0.1:11434/v1", "ollama"),
        ("http://ollama:8080/v1", "ollama"),
        ("http://vllm.internal:8000/v1", "openai"),
        ("https://notdeepseek.com/v1", "openai"),
    ],
)
def test_provider_names(base_url: str, provider: str) -> None:
    assert provider_name(base_url) == provider


def test_the_model_of_a_call() -> None:
    endpoint = Endpoint("LLM", "PUNCHCLOCK_LLM", "http://127.0.0.1:11434/v1", model="llama3.2")

    assert endpoint.model_for(None) == "llama3.2"
    assert endpoint.model_for("qwen2.5") == "qwen2.5"
    with pytest.raises(
        ConfigurationError, match="no LLM configured: set PUNCHCLOCK_LLM_BASE_URL and PUNCHCLOCK_LLM_MODEL"
    ):
        Endpoint("LLM", "PUNCHCLOCK_LLM").model_for(None)
    with pytest.raises(ConfigurationError, match=r"set PUNCHCLOCK_LLM_BASE_URL \(and PUNCHCLOCK_LLM_API_KEY"):
        Endpoint("LLM", "PUNCHCLOCK_LLM").model_for("gpt-4o-mini")

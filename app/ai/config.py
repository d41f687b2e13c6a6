"""Where the LLM lives: the chat and embeddings endpoints read from settings, and which provider each one is.

Every supported provider speaks the OpenAI protocol (``POST {base}/chat/completions``, ``{base}/embeddings``), so
the provider is only a name for traces, ``gen_ai.provider.name``, derived from the base URL:

    api.openai.com                              openai
    api.deepseek.com (any *.deepseek.com)       deepseek
    dashscope*.aliyuncs.com (Qwen)              dashscope
    port 11434, or a host named *ollama*        ollama
    anything else (vLLM, LiteLLM, a gateway)    openai: the protocol it speaks, since its make is unknown

Nothing here reads the environment: :meth:`LLMConfig.from_settings` takes the settings the entry point read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from app.errors import ConfigurationError
from app.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
OLLAMA_PORT = 11434


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible API: its base URL (``https://api.openai.com/v1``), key and default model.

    ``name`` says what it serves in messages ("LLM"); ``variables`` is the settings prefix (``PUNCHCLOCK_LLM``)
    that error messages tell the user to set. An empty ``base_url`` or ``model`` means not configured: calls then
    fail with :class:`ConfigurationError`.
    """

    name: str
    variables: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    model: str = ""

    def model_for(self, requested: str | None) -> str:
        """The model of one call (the caller's, else the configured one); ConfigurationError naming what to set
        when there is no base URL or no model."""
        model = requested or self.model
        if self.base_url and model:
            return model
        missing = [] if self.base_url else [f"{self.variables}_BASE_URL"]
        missing += [] if model else [f"{self.variables}_MODEL"]
        message = f"no {self.name} configured: set {' and '.join(missing)}"
        if not self.base_url:
            message += (
                f" (and {self.variables}_API_KEY if the provider needs one); e.g. https://api.openai.com/v1,"
                " or http://127.0.0.1:11434/v1 for a local Ollama"
            )
        raise ConfigurationError(message)

    def url(self, path: str) -> httpx.URL:
        """``{base}/{path}``, keeping the base's own path (``/v1``, ``/compatible-mode/v1``) and query."""
        base = httpx.URL(self.base_url)
        return base.copy_with(path=base.path.rstrip("/") + "/" + path)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @property
    def server_address(self) -> str:
        return httpx.URL(self.base_url).host

    @property
    def server_port(self) -> int:
        url = httpx.URL(self.base_url)
        return url.port or _DEFAULT_PORTS.get(url.scheme, 443)

    @property
    def provider(self) -> str:
        """``gen_ai.provider.name``, per the table in the module docstring."""
        return provider_name(self.base_url)


def provider_name(base_url: str) -> str:
    url = httpx.URL(base_url)
    host = url.host.lower()
    if host == "api.openai.com":
        return "openai"
    if host == "deepseek.com" or host.endswith(".deepseek.com"):
        return "deepseek"
    if host.startswith("dashscope") and host.endswith(".aliyuncs.com"):
        return "dashscope"
    if url.port == OLLAMA_PORT or "ollama" in host:
        return "ollama"
    return "openai"


@dataclass(frozen=True)
class LLMConfig:
    """The chat and embeddings endpoints, the per-request timeout (seconds) and whether spans carry content."""

    chat: Endpoint
    embeddings: Endpoint
    timeout_seconds: float = 60.0
    trace_content: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMConfig:
        """Endpoints from ``PUNCHCLOCK_LLM_*`` and ``PUNCHCLOCK_EMBEDDING_*``.

        Nothing configured is valid here (a worker without an LLM runs every other actor); a call then fails.
        A base URL that is set but is not http(s) raises ConfigurationError now. Embeddings default to the LLM's
        base URL, and to its key only when they go to that same base URL: the key is never sent to another host.
        """
        if settings.llm_timeout_seconds < 1:
            raise ConfigurationError(
                f"PUNCHCLOCK_LLM_TIMEOUT_SECONDS={settings.llm_timeout_seconds}: must be 1 or more (default 60)"
            )
        llm_base = _base_url("PUNCHCLOCK_LLM_BASE_URL", settings.llm_base_url)
        embedding_base = _base_url("PUNCHCLOCK_EMBEDDING_BASE_URL", settings.embedding_base_url) or llm_base
        embedding_key = settings.embedding_api_key or (settings.llm_api_key if embedding_base == llm_base else "")
        return cls(
            chat=Endpoint("LLM", "PUNCHCLOCK_LLM", llm_base, settings.llm_api_key, settings.llm_model),
            embeddings=Endpoint(
                "embedding model", "PUNCHCLOCK_EMBEDDING", embedding_base, embedding_key, settings.embedding_model
            ),
            timeout_seconds=float(settings.llm_timeout_seconds),
            trace_content=settings.trace_content,
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values no message, log or span may contain."""
        return tuple(key for key in (self.chat.api_key, self.embeddings.api_key) if key)


def _base_url(variable: str, value: str) -> str:
    value = value.strip().rstrip("/")
    if not value:
        return ""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        shown = value.split("://", 1)[0] + "://…" if "://" in value else value.split("?", 1)[0]
        raise ConfigurationError(
            f'{variable}="{shown}": must be an http:// or https:// URL such as https://api.openai.com/v1'
        )
    return value

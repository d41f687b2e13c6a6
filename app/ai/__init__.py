"""AI building blocks for workflows: the OpenAI-compatible LLM client, its configuration, and token usage."""

from app.ai.config import Endpoint, LLMConfig
from app.ai.llm import LLM, ChatResult, EmbeddingResult, Messages
from app.ai.retrying import RetryPolicy
from app.ai.usage import Usage

__all__ = ["LLM", "ChatResult", "EmbeddingResult", "Endpoint", "LLMConfig", "Messages", "RetryPolicy", "Usage"]

"""Choose the backend from settings."""

from __future__ import annotations

from assistants.backends.base import ChatBackend
from assistants.backends.demo import DemoBackend
from assistants.backends.openai_compatible import OpenAICompatibleBackend
from assistants.config import Settings


def backend_from_settings(settings: Settings) -> ChatBackend:
    if settings.model_base_url:
        return OpenAICompatibleBackend(
            settings.model_base_url,
            settings.model_api_key,
            timeout_s=settings.model_timeout_s,
            max_tokens_param=settings.model_max_tokens_param,
        )
    return DemoBackend()

"""The offline demo backend, used when no model backend is configured.

It lets `make dev` run end to end on a machine with no network, and says plainly — in the start-up
banner and in every answer — that it is not a real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assistants.backends.base import ChatChunk, ChatRequest, TokenUsage


def _last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return ""


class DemoBackend:
    name = "offline demo backend (no model configured: set ASSISTANTS_MODEL_BASE_URL)"

    def __init__(self, word_delay_s: float = 0.02) -> None:
        self._delay = word_delay_s

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        said = _last_user_text(request)
        if len(said) > 200:
            said = said[:200] + "…"
        answer = (
            "[Durable Assistants offline demo backend — not a real model. "
            "Set ASSISTANTS_MODEL_BASE_URL to use one.] "
            f"You said: {said}"
        )
        words = answer.split(" ")
        budget = request.max_completion_tokens
        produced = 0
        for i, word in enumerate(words):
            if budget is not None and produced >= budget:
                yield ChatChunk(finish_reason="length")
                break
            await asyncio.sleep(self._delay)
            produced += 1
            yield ChatChunk(text=word if i == 0 else " " + word)
        else:
            yield ChatChunk(finish_reason="stop")
        prompt = sum(len(str(m.get("content", ""))) for m in request.messages) // 4 + 1
        yield ChatChunk(usage=TokenUsage(prompt_tokens=prompt, completion_tokens=produced))

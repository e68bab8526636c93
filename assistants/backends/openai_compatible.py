"""Any OpenAI-compatible Chat Completions endpoint: OpenAI, Azure OpenAI, Ollama, vLLM,
llama.cpp server, LiteLLM.

The client is built with `max_retries=0`: Temporal owns retries, so one failed HTTP call surfaces
as one failed activity attempt. Status codes are classified the way the `openai` SDK itself would
retry them (408, 409, 429, 5xx) and `Retry-After` is handed to Temporal as the next retry delay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from assistants.backends.base import (
    BackendError,
    ChatChunk,
    ChatRequest,
    TokenUsage,
    ToolCallDelta,
)
from assistants.backends.retry_after import retry_after
from assistants.storable import TextRepair, repair

RETRYABLE_STATUS = {408, 409, 429}


def classify(error: openai.APIStatusError) -> BackendError:
    status = error.status_code
    retryable = status in RETRYABLE_STATUS or status >= 500
    if status == 429:
        code = "rate_limit_exceeded"
    elif status in (400, 413, 422):
        code = "invalid_prompt"
    else:
        code = "server_error"
    detail = error.message or f"HTTP {status}"
    return BackendError(
        f"The model backend returned {status}: {detail}",
        status=status,
        retryable=retryable,
        retry_after_s=retry_after(error.response.headers),
        code=code,
    )


def _tool_call_delta(call: ChoiceDeltaToolCall, repairs: dict[int, TextRepair]) -> ToolCallDelta:
    function = call.function
    arguments = ""
    if function is not None:
        arguments = repairs.setdefault(call.index, TextRepair()).feed(function.arguments or "")
    return ToolCallDelta(
        index=call.index,
        id=repair(call.id) if call.id else None,
        name=repair(function.name) if function is not None and function.name else None,
        arguments=arguments,
    )


class OpenAICompatibleBackend:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        max_tokens_param: str = "max_completion_tokens",
    ) -> None:
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
        )
        self._max_tokens_param = max_tokens_param
        self._base_url = base_url

    @property
    def name(self) -> str:
        return f"openai-compatible ({self._base_url})"

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_completion_tokens is not None:
            params[self._max_tokens_param] = request.max_completion_tokens
        if request.response_format is not None:
            params["response_format"] = request.response_format
        if request.tools:
            params["tools"] = request.tools
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = request.parallel_tool_calls
        return params

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        # A backend's JSON can carry lone surrogates (or split a pair across two chunks): the
        # text is repaired here, before it reaches the store (see `assistants.storable`).
        text_repair = TextRepair()
        argument_repairs: dict[int, TextRepair] = {}
        try:
            stream = await self._client.chat.completions.create(**self._params(request))
            async with stream:
                async for chunk in stream:
                    usage = None
                    if chunk.usage is not None:
                        usage = TokenUsage(
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                        )
                    text = ""
                    finish = None
                    calls: tuple[ToolCallDelta, ...] = ()
                    if chunk.choices:
                        choice = chunk.choices[0]
                        text = text_repair.feed(choice.delta.content or "")
                        finish = choice.finish_reason
                        calls = tuple(
                            _tool_call_delta(call, argument_repairs)
                            for call in choice.delta.tool_calls or ()
                        )
                        if finish:
                            text += text_repair.flush()
                    if text or calls or finish or usage:
                        yield ChatChunk(
                            text=text, tool_calls=calls, finish_reason=finish, usage=usage
                        )
        except openai.APIStatusError as error:
            raise classify(error) from error
        except Exception as error:  # transport failures (connect, reset, truncated stream)
            raise BackendError(
                f"The model backend connection failed: {type(error).__name__}: {error}",
                retryable=True,
            ) from error

    async def close(self) -> None:
        await self._client.close()

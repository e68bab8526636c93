"""Any OpenAI-compatible Chat Completions endpoint: OpenAI, Azure OpenAI, Ollama, vLLM,
llama.cpp server, LiteLLM.

Why not the `openai` SDK: per streamed chunk it builds a pydantic model and walks several layers
of generic plumbing, which profiled at ~9% of a busy worker's CPU. This module posts the JSON
body itself over one shared `httpx2` connection pool (the transport the SDK uses, so TLS trust,
proxies from the environment and redirects behave the same), decodes the event stream with
`assistants.backends.sse` and turns each `json.loads`-ed chunk straight into `ChatChunk`s.

Nothing here retries: Temporal owns retries, so one failed HTTP call surfaces as one failed
activity attempt. Status codes are classified the way the `openai` SDK would retry them (408,
409, 429, 5xx) and `Retry-After` is handed to Temporal as the next retry delay. Every transport
failure (refused, reset, timed out, a stream cut before it finished) is retryable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from assistants.backends.base import (
    BackendError,
    ChatChunk,
    ChatRequest,
    TokenUsage,
    ToolCallDelta,
)
from assistants.backends.retry_after import retry_after
from assistants.backends.sse import Event, SSEDecoder
from assistants.storable import TextRepair, repair

RETRYABLE_STATUS = {408, 409, 429}

# The SDK's pool: plenty of connections for concurrent runs, idle ones kept for reuse.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

# After `[DONE]`, how long to wait for the end of the HTTP body so the connection goes back to
# the pool instead of being closed (the server normally ends it in the same breath).
DRAIN_S = 0.1


def classify(status: int, detail: str | None, headers: Mapping[str, str]) -> BackendError:
    retryable = status in RETRYABLE_STATUS or status >= 500
    if status == 429:
        code = "rate_limit_exceeded"
    elif status in (400, 413, 422):
        code = "invalid_prompt"
    else:
        code = "server_error"
    return BackendError(
        f"The model backend returned {status}: {detail or f'HTTP {status}'}",
        status=status,
        retryable=retryable,
        retry_after_s=retry_after(headers),
        code=code,
    )


def error_message(body: bytes) -> str | None:
    """The message of an error body: OpenAI's `{"error": {"message": ...}}`, a bare
    `{"message": ...}`, or Ollama's and llama.cpp's `{"error": "..."}`."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    error = payload.get("error", payload) if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) and error else None


def endpoint(base_url: str, path: str) -> str:
    """`{base_url}/{path}`, keeping a query string (Azure's `?api-version=`) at the end."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


def _stream_error(payload: Any, event: str | None) -> BackendError:
    """An error reported inside a 200 stream (the server failed after it started answering).
    Retryable, like a cut connection: the attempt is retried from the start."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message, code = None, None
    if isinstance(error, dict):
        message, code = error.get("message"), error.get("code") or error.get("type")
    elif isinstance(error, str):
        message = error
    if not isinstance(message, str) or not message:
        message = f"an unexplained {event or 'error'} event"
    rate_limited = code in (429, "429", "rate_limit_exceeded")
    return BackendError(
        f"The model backend failed mid-stream: {message}",
        retryable=True,
        code="rate_limit_exceeded" if rate_limited else "server_error",
    )


def _usage(value: Any) -> TokenUsage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion)


def _tool_call_delta(
    call: dict[str, Any], position: int, repairs: dict[int, TextRepair]
) -> ToolCallDelta:
    index = call.get("index", position)  # a few servers leave out the index of a lone call
    function = call.get("function")
    arguments = ""
    name = None
    if isinstance(function, dict):
        arguments = repairs.setdefault(index, TextRepair()).feed(function.get("arguments") or "")
        name = function.get("name")
    call_id = call.get("id")
    return ToolCallDelta(
        index=index,
        id=repair(call_id) if call_id else None,
        name=repair(name) if name else None,
        arguments=arguments,
    )


class _Decoder:
    """Turns chat.completion.chunk payloads into `ChatChunk`s, repairing the text on the way:
    a backend's JSON can carry lone surrogates (or split a pair across two chunks), repaired
    here before it reaches the store (see `assistants.storable`)."""

    def __init__(self) -> None:
        self.text_repair = TextRepair()
        self.argument_repairs: dict[int, TextRepair] = {}
        self.finished = False  # a finish_reason arrived

    def chunk(self, event: Event) -> ChatChunk | None:
        payload = json.loads(event.data)
        if not isinstance(payload, dict):
            raise BackendError(
                f"The model backend sent an unexpected stream event: {event.data[:200]!r}",
                retryable=True,
            )
        if event.event == "error" or payload.get("error"):
            raise _stream_error(payload, event.event)
        return self.build(payload.get("choices"), payload.get("usage"), "delta")

    def build(self, choices: Any, usage_value: Any, key: str) -> ChatChunk | None:
        usage = _usage(usage_value) if usage_value is not None else None
        text = ""
        finish = None
        calls: tuple[ToolCallDelta, ...] = ()
        if choices:
            choice = choices[0]
            delta = choice.get(key) or {}
            content = delta.get("content")
            if content and isinstance(content, str):
                text = self.text_repair.feed(content)
            finish = choice.get("finish_reason")
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                calls = tuple(
                    _tool_call_delta(call, position, self.argument_repairs)
                    for position, call in enumerate(tool_calls)
                )
            if finish:
                self.finished = True
                text += self.text_repair.flush()
        if text or calls or finish or usage:
            return ChatChunk(text=text, tool_calls=calls, finish_reason=finish, usage=usage)
        return None


class OpenAICompatibleBackend:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        max_tokens_param: str = "max_completion_tokens",
    ) -> None:
        # `timeout_s` bounds connecting, each read (the gap between two streamed chunks) and
        # each write, as the SDK's `timeout=` did; it is not a deadline for the whole answer.
        self._client = httpx2.AsyncClient(
            headers={
                "Authorization": f"Bearer {api_key or 'not-needed'}",
                "Content-Type": "application/json",
                "Accept": "application/json",  # what the SDK sends, streaming or not
                "User-Agent": "durable-assistants",
            },
            timeout=httpx2.Timeout(timeout_s),
            limits=LIMITS,
            follow_redirects=True,
        )
        self._url = endpoint(base_url, "chat/completions")
        self._timeout_s = timeout_s
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
        decoder = _Decoder()
        try:
            # The SDK's encoding: UTF-8, no NaN (a lone surrogate fails here, retryably).
            body = json.dumps(
                self._params(request), ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            async with self._client.stream("POST", self._url, content=body) as response:
                status = response.status_code
                if not 200 <= status < 300:
                    detail = error_message(await response.aread())
                    raise classify(status, detail, response.headers)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores `stream: true` answers one chat.completion.
                    payload = json.loads(await response.aread())
                    if not isinstance(payload, dict) or payload.get("error"):
                        raise _stream_error(payload, None)
                    whole = decoder.build(payload.get("choices"), payload.get("usage"), "message")
                    if whole is not None:
                        yield whole
                    return
                sse = SSEDecoder()
                done = False
                async with contextlib.aclosing(response.aiter_bytes()) as reads:
                    async for data in reads:
                        for event in sse.feed(data):
                            if event.data.startswith(b"[DONE]"):
                                done = True
                                break
                            chunk = decoder.chunk(event)
                            if chunk is not None:
                                yield chunk
                        if done:
                            break
                    if done:
                        # Read the rest (the end of the chunked body) so the connection is
                        # reused; a server that keeps talking after [DONE] is cut off.
                        with contextlib.suppress(TimeoutError, httpx2.HTTPError):
                            async with asyncio.timeout(DRAIN_S):
                                async for _ in reads:
                                    pass
                        return
                for event in sse.finish():
                    if event.data.startswith(b"[DONE]"):
                        return
                    chunk = decoder.chunk(event)
                    if chunk is not None:
                        yield chunk
                if not decoder.finished:
                    # The body ended cleanly but the answer did not: a proxy or server cut it.
                    # (A server that never sends [DONE] still counts as done once it finished.)
                    raise BackendError(
                        "The model backend connection failed: the stream ended before [DONE]",
                        retryable=True,
                    )
        except BackendError:
            raise
        except Exception as error:  # transport failures (connect, reset, timeout, bad JSON)
            detail = str(error) or "no detail"
            if isinstance(error, httpx2.TimeoutException):
                detail = f"no response within {self._timeout_s:g}s"
            raise BackendError(
                f"The model backend connection failed: {type(error).__name__}: {detail}",
                retryable=True,
            ) from error

    async def close(self) -> None:
        await self._client.aclose()

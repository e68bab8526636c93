"""The model backend protocol.

Activities depend on this protocol only, so tests and the offline demo substitute backends without
monkeypatching. A backend never retries on its own: it raises `BackendError` saying whether the
failure is retryable (and after how long), and Temporal's retry policy does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of one streamed tool call. `index` identifies the call; `id` and `name` come
    with its first fragment, `arguments` is a piece of the JSON arguments string."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ChatChunk:
    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: TokenUsage | None = None


class BackendError(Exception):
    """A failed model call. `code` is the run's `last_error.code` if this failure ends the run."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after_s: float | None = None,
        code: str = "server_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.code = code


class ChatBackend(Protocol):
    @property
    def name(self) -> str:
        """Shown in the start-up banner and logs."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the completion. Raise `BackendError` on failure."""
        ...

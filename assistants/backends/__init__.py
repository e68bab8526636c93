"""Model backends: anything that streams chat completions behind the `ChatBackend` protocol."""

from assistants.backends.base import (
    BackendError,
    ChatBackend,
    ChatChunk,
    ChatRequest,
    TokenUsage,
    ToolCallDelta,
)

__all__ = [
    "BackendError",
    "ChatBackend",
    "ChatChunk",
    "ChatRequest",
    "TokenUsage",
    "ToolCallDelta",
]

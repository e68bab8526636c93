"""Turn a run and its thread into a Chat Completions prompt.

Applies the run's instructions (plus `additional_instructions`), converts stored message content to
chat content parts, and applies `truncation_strategy` and `max_prompt_tokens`. Token counts here are
an estimate (about four characters per token, plus a per-message overhead): backends differ in
tokenizers, and the exact count comes back in the backend's usage, which is what the run reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PER_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _message_tokens(message: dict[str, Any]) -> int:
    content = message["content"]
    total = PER_MESSAGE_OVERHEAD
    for call in message.get("tool_calls") or ():
        function = call["function"]
        total += estimate_tokens(function["name"]) + estimate_tokens(function["arguments"])
    if content is None:
        return total
    if isinstance(content, str):
        return estimate_tokens(content) + total
    for part in content:
        total += estimate_tokens(part.get("text", "")) if part.get("type") == "text" else 85
    return total


def chat_content(role: str, blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Stored content blocks → Chat Completions content (plain text when that is all there is)."""
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            value = block["text"]["value"]
            texts.append(value)
            parts.append({"type": "text", "text": value})
        elif kind == "image_url" and role == "user":
            parts.append({"type": "image_url", "image_url": block["image_url"]})
        elif kind == "image_file":
            placeholder = f"[image file {block['image_file']['file_id']}]"
            texts.append(placeholder)
            parts.append({"type": "text", "text": placeholder})
    if all(p["type"] == "text" for p in parts):
        return "\n".join(texts)
    return parts


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]
    estimated_tokens: int
    over_budget: bool  # still above max_prompt_tokens after truncation


def build_prompt(
    *,
    instructions: str,
    additional_instructions: str | None,
    history: list[tuple[str, list[dict[str, Any]]]],
    truncation: dict[str, Any],
    max_prompt_tokens: int | None,
    run_turns: list[dict[str, Any]] | None = None,
) -> Prompt:
    """`history` is the thread before this run; `run_turns` are this run's own earlier rounds
    (assistant text, tool calls and tool outputs), which truncation never separates or drops."""
    system_text = instructions
    if additional_instructions:
        system_text = (
            f"{system_text}\n\n{additional_instructions}"
            if system_text
            else additional_instructions
        )
    system = [{"role": "system", "content": system_text}] if system_text else []
    turns = [
        {"role": role, "content": chat_content(role, blocks)} for role, blocks in history if blocks
    ]
    if truncation.get("type") == "last_messages" and truncation.get("last_messages"):
        turns = turns[-int(truncation["last_messages"]) :]

    own = run_turns or []

    def total(items: list[dict[str, Any]]) -> int:
        return sum(_message_tokens(m) for m in system + items + own)

    estimated = total(turns)
    if max_prompt_tokens is not None and truncation.get("type", "auto") == "auto":
        # `auto` drops the oldest turns until the prompt fits, but always keeps the newest one.
        while len(turns) > 1 and estimated > max_prompt_tokens:
            turns = turns[1:]
            estimated = total(turns)
    over = max_prompt_tokens is not None and estimated > max_prompt_tokens
    return Prompt(messages=system + turns + own, estimated_tokens=estimated, over_budget=over)

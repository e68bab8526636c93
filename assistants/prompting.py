"""Turn a run and its thread into a Chat Completions prompt.

Applies the run's instructions (plus `additional_instructions`), converts stored message content to
chat content parts, and applies `truncation_strategy`, `max_prompt_tokens` and the model's context
window. Token counts here are an estimate (about four characters per token for ASCII, one per
character otherwise, plus a per-message overhead): backends differ in tokenizers, and the exact
count comes back in the backend's usage, which is what the run reports.

The context window is a hard limit, whatever the run asked for: oldest turns are dropped until
the prompt fits the window less the room kept for the answer (`prompt_window`), so a backend is
never sent a prompt it must refuse (a thread can hold far more than any model reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PER_MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    if text.isascii():
        return (len(text) + 3) // 4
    # Tokenizers spend about a token per character on most non-Latin scripts: counting four
    # characters per token there would undercount a Chinese text fourfold.
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (ascii_chars + 3) // 4 + len(text) - ascii_chars


def prompt_window(
    context_tokens: int, completion_reserve_tokens: int, completion_budget: int | None
) -> int:
    """How much of the model's context window the prompt may fill: the window less the room kept
    for the answer (the run's remaining `max_completion_tokens` when it has one, else
    `completion_reserve_tokens`), and never less than half the window."""
    reserve = completion_budget if completion_budget is not None else completion_reserve_tokens
    return context_tokens - min(reserve, context_tokens // 2)


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


def run_instructions(instructions: str, additional_instructions: str | None) -> str:
    """The instructions a run works with: its own (or its assistant's), then the run's
    `additional_instructions` after one space.

    This one text is both the system message and the run object's `instructions`: the hosted API
    showed a run created with `additional_instructions` as
    `instructions='You are a helpful assistant. Make sure your output is in JSON format.'`
    (the seeds' notebook), so a client reads exactly what the model was told.
    """
    return " ".join(part for part in (instructions, additional_instructions) if part)


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]
    estimated_tokens: int
    over_budget: bool  # still above max_prompt_tokens after truncation
    over_context: bool = False  # still above the context window: even the newest turn is too big


def build_prompt(
    *,
    instructions: str,
    additional_instructions: str | None,
    history: list[tuple[str, list[dict[str, Any]]]],
    truncation: dict[str, Any],
    max_prompt_tokens: int | None,
    run_turns: list[dict[str, Any]] | None = None,
    context_tokens: int | None = None,
) -> Prompt:
    """`history` is the thread before this run; `run_turns` are this run's own earlier rounds
    (assistant text, tool calls and tool outputs), which truncation never separates or drops.
    `context_tokens` is what the prompt may fill of the model's window (`prompt_window`)."""
    system_text = run_instructions(instructions, additional_instructions)
    system = [{"role": "system", "content": system_text}] if system_text else []
    turns = [
        {"role": role, "content": chat_content(role, blocks)} for role, blocks in history if blocks
    ]
    if truncation.get("type") == "last_messages" and truncation.get("last_messages"):
        turns = turns[-int(truncation["last_messages"]) :]

    own = run_turns or []

    # Drop the oldest turns until the prompt fits, but always keep the newest one. `auto` fits
    # `max_prompt_tokens`; every strategy fits the context window.
    fit = context_tokens
    if max_prompt_tokens is not None and truncation.get("type", "auto") == "auto":
        fit = max_prompt_tokens if fit is None else min(fit, max_prompt_tokens)
    sizes = [_message_tokens(m) for m in turns]
    estimated = sum(_message_tokens(m) for m in system + own) + sum(sizes)
    first = 0
    while fit is not None and len(turns) - first > 1 and estimated > fit:
        estimated -= sizes[first]
        first += 1
    turns = turns[first:]
    return Prompt(
        messages=system + turns + own,
        estimated_tokens=estimated,
        over_budget=max_prompt_tokens is not None and estimated > max_prompt_tokens,
        over_context=context_tokens is not None and estimated > context_tokens,
    )

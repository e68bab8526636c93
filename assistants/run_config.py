"""Resolve a run's effective configuration at creation time.

A run copies what it does not override from its assistant (model, instructions, tools,
temperature, top_p, response_format), so later edits to the assistant never change a run already
created — as on OpenAI.
"""

from __future__ import annotations

import time
from typing import Any

from assistants.errors import InvalidRequest
from assistants.requests import _RunOptions, dump_optional, dump_tools


def _check_tool_choice(tool_choice: Any, tools: list[dict[str, Any]]) -> None:
    if not isinstance(tool_choice, dict):
        return
    kind = tool_choice["type"]
    if kind == "function":
        name = tool_choice["function"]["name"]
        names = {t["function"]["name"] for t in tools if t["type"] == "function"}
        if name not in names:
            raise InvalidRequest(
                f"Invalid 'tool_choice': function '{name}' is not one of the run's tools.",
                param="tool_choice",
            )
    elif all(t["type"] != kind for t in tools):
        raise InvalidRequest(
            f"Invalid 'tool_choice': the run has no '{kind}' tool.", param="tool_choice"
        )


def resolve_run_fields(
    options: _RunOptions,
    assistant: dict[str, Any],
    *,
    expires_after_s: int,
    additional_instructions: str | None = None,
) -> dict[str, Any]:
    now = int(time.time())
    tools = dump_tools(options.tools) if options.tools is not None else assistant["tools"]
    tool_choice = dump_optional(options.tool_choice)
    _check_tool_choice(tool_choice, tools)
    truncation = (
        options.truncation_strategy.model_dump()
        if options.truncation_strategy is not None
        else {"type": "auto", "last_messages": None}
    )
    instructions = options.instructions
    if instructions is None:
        instructions = assistant["instructions"] or ""
    return {
        "assistant_id": assistant["id"],
        "created_at": now,
        "expires_at": now + expires_after_s,
        "model": options.model or assistant["model"],
        "instructions": instructions,
        "additional_instructions": additional_instructions,
        "tools": tools,
        "metadata": options.metadata or {},
        "temperature": options.temperature
        if options.temperature is not None
        else assistant["temperature"],
        "top_p": options.top_p if options.top_p is not None else assistant["top_p"],
        "max_prompt_tokens": options.max_prompt_tokens,
        "max_completion_tokens": options.max_completion_tokens,
        "truncation_strategy": truncation,
        "response_format": dump_optional(options.response_format)
        if options.response_format is not None
        else assistant["response_format"],
        "tool_choice": tool_choice,
        "parallel_tool_calls": options.parallel_tool_calls
        if options.parallel_tool_calls is not None
        else True,
    }

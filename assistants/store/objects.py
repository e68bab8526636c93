"""Rows to API objects.

The store hands out objects already shaped as the Assistants API returns them (plain dicts that
validate against the official OpenAPI schemas), because the same snapshots are written to the run
event log and served as SSE payloads. Every spec-required field is present, `null` where unset.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from assistants.file_search import tool as search_tool
from assistants.prompting import run_instructions

JSONDict = dict[str, Any]


def assistant(row: Row[Any]) -> JSONDict:
    return {
        "id": row.id,
        "object": "assistant",
        "created_at": row.created_at,
        "name": row.name,
        "description": row.description,
        "model": row.model,
        "instructions": row.instructions,
        "tools": row.tools,
        "tool_resources": row.tool_resources or {},
        "metadata": row.metadata,
        "temperature": row.temperature,
        "top_p": row.top_p,
        "response_format": row.response_format if row.response_format is not None else "auto",
    }


def thread(row: Row[Any]) -> JSONDict:
    return {
        "id": row.id,
        "object": "thread",
        "created_at": row.created_at,
        "metadata": row.metadata,
        "tool_resources": row.tool_resources or {},
    }


def message(row: Row[Any]) -> JSONDict:
    return {
        "id": row.id,
        "object": "thread.message",
        "created_at": row.created_at,
        "thread_id": row.thread_id,
        "status": row.status,
        "incomplete_details": row.incomplete_details,
        "completed_at": row.completed_at,
        "incomplete_at": row.incomplete_at,
        "role": row.role,
        "content": row.content,
        "assistant_id": row.assistant_id,
        "run_id": row.run_id,
        "attachments": row.attachments,
        "metadata": row.metadata,
    }


def run(row: Row[Any]) -> JSONDict:
    return {
        "id": row.id,
        "object": "thread.run",
        "created_at": row.created_at,
        "thread_id": row.thread_id,
        "assistant_id": row.assistant_id,
        "status": row.status,
        "required_action": row.required_action,
        "last_error": row.last_error,
        "expires_at": row.expires_at,
        "started_at": row.started_at,
        "cancelled_at": row.cancelled_at,
        "failed_at": row.failed_at,
        "completed_at": row.completed_at,
        "incomplete_details": row.incomplete_details,
        "model": row.model,
        "instructions": run_instructions(row.instructions, row.additional_instructions),
        "tools": row.tools,
        "metadata": row.metadata,
        "usage": row.usage,
        "temperature": row.temperature,
        "top_p": row.top_p,
        "max_prompt_tokens": row.max_prompt_tokens,
        "max_completion_tokens": row.max_completion_tokens,
        "truncation_strategy": row.truncation_strategy,
        "tool_choice": row.tool_choice if row.tool_choice is not None else "auto",
        "parallel_tool_calls": row.parallel_tool_calls,
        "response_format": row.response_format if row.response_format is not None else "auto",
    }


def step(row: Row[Any], include_content: bool = False) -> JSONDict:
    """`include_content`: file_search results carry their chunk text (`include[]`)."""
    return {
        "id": row.id,
        "object": "thread.run.step",
        "created_at": row.created_at,
        "assistant_id": row.assistant_id,
        "thread_id": row.thread_id,
        "run_id": row.run_id,
        "type": row.type,
        "status": row.status,
        "step_details": search_tool.public_details(row.step_details, include_content),
        "last_error": row.last_error,
        "expired_at": row.expired_at,
        "cancelled_at": row.cancelled_at,
        "failed_at": row.failed_at,
        "completed_at": row.completed_at,
        "metadata": row.metadata,
        "usage": row.usage,
    }


def deleted(kind: str, object_id: str) -> JSONDict:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}


def text_content(value: str) -> list[JSONDict]:
    return [{"type": "text", "text": {"value": value, "annotations": []}}]

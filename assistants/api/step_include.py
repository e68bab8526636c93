"""`include[]` on run create and run-step reads: the one value OpenAI defines, checked.

`step_details.tool_calls[*].file_search.results[*].content` makes file_search results carry the
text of their chunks; without it a result is only `file_id`, `file_name` and `score`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from assistants.api.context import Services
from assistants.errors import InvalidRequest
from assistants.file_search.tool import INCLUDE_CONTENT
from assistants.store.events import RunEvent


def include_content(request: Request) -> bool:
    values = request.query_params.getlist("include[]") + request.query_params.getlist("include")
    for value in values:
        if value != INCLUDE_CONTENT:
            raise InvalidRequest(
                f"Invalid value for 'include': '{value}'. Supported values are: "
                f"'{INCLUDE_CONTENT}'.",
                param="include",
                code="invalid_value",
            )
    return bool(values)


def with_search_content(
    svc: Services, project_id: str
) -> Callable[[RunEvent], Awaitable[RunEvent]]:
    """For a stream whose run was created with `include[]`: a completed `tool_calls` step with
    file_search results is served as the store has it, results with their content (the log
    keeps steps without it)."""

    async def rewrite(event: RunEvent) -> RunEvent:
        if event.event != "thread.run.step.completed" or '"file_search"' not in event.data:
            return event
        step = json.loads(event.data)
        full = await svc.store.runs.get_step(
            project_id, step["thread_id"], step["run_id"], step["id"], include_content=True
        )
        full["status"], full["completed_at"] = step["status"], step["completed_at"]
        return RunEvent(event.seq, event.event, json.dumps(full), event.created_ms)

    return rewrite

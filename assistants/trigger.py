"""Starting runs from other services, without HTTP: for code that already talks to Temporal.

A platform service can start a run as a workflow with `start_run` (and await `handle.result()`),
and a workflow of its own can run one as a **child workflow** with `execute_child_run`. Either way
the run's first activity records it in the store exactly as `POST /threads/{id}/runs` would — the
thread (new, or an existing one, locked for the run), the new messages, the run, its events — so it
is then indistinguishable from an HTTP-created run through the API (`runs.list`, steps, streaming
via `GET …/events`). The result is a `RunResult`: the final status, usage, error, and the texts of
the assistant messages the run wrote.

    from assistants.trigger import RunRequest, start_run

    handle = await start_run(client, RunRequest(
        project_id="default", assistant_id="asst_…", messages=[MessageInput("user", "Hi")],
    ), task_queue="durable-assistants")
    result = await handle.result()

Inside a workflow (the caller's worker needs nothing registered for this), import through the
sandbox — `workflows.shared` too, so the result's dataclasses resolve:

    with workflow.unsafe.imports_passed_through():
        import workflows.shared
        from assistants.trigger import RunRequest, execute_child_run

    result = await execute_child_run(RunRequest(...), task_queue="durable-assistants")

The new messages do cross Temporal history (in the request); turn on payload encryption
(`ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS`) on every client and worker to keep them unreadable there.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from assistants.ids import from_uuid_hex
from workflows.shared import WORKFLOW_NAME, MessageInput, RunInput, RunRequest, RunResult

__all__ = ["MessageInput", "RunRequest", "RunResult", "execute_child_run", "start_run"]


def _input(run_id: str, request: RunRequest) -> RunInput:
    return RunInput(
        run_id=run_id,
        thread_id=request.thread_id or "",
        assistant_id=request.assistant_id,
        project_id=request.project_id,
        model=request.model or "",
        expires_at=0,  # set when the run is recorded
        request=request,
    )


async def start_run(
    client: Client, request: RunRequest, *, task_queue: str, run_id: str | None = None
) -> WorkflowHandle[Any, RunResult]:
    """Start a run as a workflow (workflow id = run id) and return its handle."""
    run_id = run_id or from_uuid_hex("run", uuid.uuid4().hex)
    return await client.start_workflow(
        WORKFLOW_NAME,
        _input(run_id, request),
        id=run_id,
        task_queue=task_queue,
        result_type=RunResult,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"run of assistant {request.assistant_id} (started by a service)",
    )


async def execute_child_run(
    request: RunRequest, *, task_queue: str, run_id: str | None = None
) -> RunResult:
    """From inside a workflow: run the assistant as a child workflow and return its result."""
    run_id = run_id or from_uuid_hex("run", workflow.uuid4().hex)
    result: RunResult = await workflow.execute_child_workflow(
        WORKFLOW_NAME,
        _input(run_id, request),
        id=run_id,
        task_queue=task_queue,
        result_type=RunResult,
        static_summary=f"run of assistant {request.assistant_id} (child workflow)",
    )
    return result

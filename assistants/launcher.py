"""Starting and cancelling run workflows from the API side.

The route writes the run to the store first (taking the thread lock), then starts the workflow
with workflow id = run id. If the API dies in between, or Temporal is briefly unreachable, the run
is still `queued` in the store; the sweeper here finds such runs and starts them. Starting is
idempotent (a duplicate id is rejected), so sweeping and a slow first start never run a run twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from assistants.config import Settings
from assistants.errors import InvalidRequest, ServiceUnavailable
from assistants.store import Store
from assistants.temporal import run_timeouts
from workflows.search_attributes import initial_attributes
from workflows.shared import (
    CANCEL_SIGNAL,
    SUBMIT_TOOL_OUTPUTS_UPDATE,
    WORKFLOW_NAME,
    RunInput,
    ToolOutputsSubmission,
)


class RunGone(Exception):
    """The run's workflow has already closed."""


log = structlog.get_logger(__name__)


class RunLauncher:
    def __init__(self, settings: Settings, store: Store, client: Client) -> None:
        self._settings = settings
        self._store = store
        self.client = client

    def _input(self, run: dict[str, Any], project_id: str) -> RunInput:
        return RunInput(
            run_id=run["id"],
            thread_id=run["thread_id"],
            assistant_id=run["assistant_id"],
            project_id=project_id,
            model=run["model"],
            expires_at=run["expires_at"] or 0,
            timeouts=run_timeouts(self._settings),
            search_attributes=self._settings.search_attributes,
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
        )

    async def _start(self, run: dict[str, Any], project_id: str, *, signal: str | None) -> None:
        options: dict[str, Any] = {}
        if self._settings.search_attributes:
            options["search_attributes"] = initial_attributes(
                assistant_id=run["assistant_id"],
                thread_id=run["thread_id"],
                project_id=project_id,
                model=run["model"],
            )
        if signal is None:
            options["id_conflict_policy"] = WorkflowIDConflictPolicy.FAIL
            # When a worker shares this client (`dev`), the first workflow task comes back in
            # the start response instead of through the task queue.
            options["request_eager_start"] = True
        else:
            options["start_signal"] = signal  # signal-with-start: signals a running workflow
        await self.client.start_workflow(
            WORKFLOW_NAME,
            self._input(run, project_id),
            id=run["id"],
            task_queue=self._settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # What the Temporal UI shows for the workflow: ids only, never message text.
            static_summary=f"run of assistant {run['assistant_id']} on thread {run['thread_id']}",
            # Bounded, so an unreachable Temporal delays the HTTP answer by seconds, not minutes:
            # the run is already safe in the store and the sweeper will start it.
            rpc_timeout=timedelta(seconds=5),
            **options,
        )

    async def start(self, run: dict[str, Any], project_id: str) -> None:
        bound = log.bind(
            run_id=run["id"], thread_id=run["thread_id"], assistant_id=run["assistant_id"]
        )
        try:
            await self._start(run, project_id, signal=None)
        except WorkflowAlreadyStartedError:
            pass  # the sweeper (or a retried start) got there first: one workflow per run
        except RPCError as error:
            # The run stays `queued` in the store; the sweeper starts it once Temporal answers.
            bound.warning("workflow start failed; the sweeper will retry", error=str(error))

    async def cancel(self, run: dict[str, Any], project_id: str) -> None:
        """Signal-with-start: reaches a running workflow, or starts one that sees `cancelling`."""
        try:
            await self._start(run, project_id, signal=CANCEL_SIGNAL)
        except WorkflowAlreadyStartedError:
            pass  # the workflow already finished; the run is terminal
        except RPCError as error:
            log.warning(
                "cancel signal failed; the sweeper will retry", run_id=run["id"], error=str(error)
            )

    async def submit_tool_outputs(
        self, run_id: str, submission_id: str, call_ids: list[str]
    ) -> None:
        """Deliver staged tool outputs as the workflow's `submit_tool_outputs` update and wait
        until they are applied. The workflow's validator rejects a submission that does not
        answer exactly the pending calls (or comes too late): that is an `InvalidRequest`."""
        handle = self.client.get_workflow_handle(run_id)
        try:
            await handle.execute_update(
                SUBMIT_TOOL_OUTPUTS_UPDATE,
                ToolOutputsSubmission(submission_id=submission_id, call_ids=call_ids),
                rpc_timeout=timedelta(seconds=30),
            )
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError):
                param = cause.details[0] if cause.details and cause.details[0] else None
                raise InvalidRequest(cause.message, param=param) from None
            raise
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise ServiceUnavailable("Timed out delivering the tool outputs; retry.") from None
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RunGone(run_id) from None
            raise ServiceUnavailable(f"Temporal is unavailable: {error.message}") from None

    async def sweep(self) -> int:
        stale = await self._store.runs.stale_queued(self._settings.requeue_after_s)
        for row in stale:
            run = {
                "id": row.id,
                "thread_id": row.thread_id,
                "assistant_id": row.assistant_id,
                "model": row.model,
                "expires_at": row.expires_at,
            }
            if row.status == "cancelling":
                await self.cancel(run, row.project_id)
            else:
                await self.start(run, row.project_id)
        return len(stale)

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a store or Temporal hiccup
                log.exception("run sweeper failed")
            await asyncio.sleep(self._settings.requeue_after_s)

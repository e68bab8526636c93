"""Run state transitions (and tool-call bookkeeping), written to the store and the run's event log.

(`queued → in_progress` happens at the start of the model activity, see `activities/model.py`.)
"""

from __future__ import annotations

import structlog
from temporalio import activity

from assistants.store import Store
from workflows.shared import (
    ApplyOutputsInput,
    CompleteStepInput,
    FinishInput,
    RequireActionInput,
    ToolOutputInput,
)

log = structlog.get_logger(__name__)


class RunStateActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="finish_run")
    async def finish(self, finish: FinishInput) -> None:
        last_error = None
        if finish.error_code is not None:
            last_error = {"code": finish.error_code, "message": finish.error_message or ""}
        run = await self._store.runs.finish(
            finish.run_id,
            finish.status,
            usage=finish.usage.as_object() if finish.usage else None,
            last_error=last_error,
            incomplete_reason=finish.incomplete_reason,
        )
        log.info(
            "run finished",
            run_id=finish.run_id,
            thread_id=run["thread_id"],
            assistant_id=run["assistant_id"],
            status=run["status"],
        )

    @activity.defn(name="require_action")
    async def require_action(self, action: RequireActionInput) -> bool:
        """`in_progress` → `requires_action` for the client's calls; False if a cancel got there
        first."""
        return await self._store.tool_calls.require_action(
            action.run_id, action.step_id, action.call_ids
        )

    @activity.defn(name="apply_tool_outputs")
    async def apply_tool_outputs(self, apply: ApplyOutputsInput) -> bool:
        """The client's staged outputs onto the step; the run back to `queued`."""
        return await self._store.tool_calls.apply_submission(
            apply.run_id, apply.step_id, apply.submission_id
        )

    @activity.defn(name="record_tool_output")
    async def record_tool_output(self, output: ToolOutputInput) -> None:
        await self._store.tool_calls.record_output(
            output.run_id, output.step_id, output.call_id, output.output
        )

    @activity.defn(name="complete_tool_step")
    async def complete_tool_step(self, step: CompleteStepInput) -> None:
        await self._store.tool_calls.complete_step(step.run_id, step.step_id)

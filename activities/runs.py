"""Run state transitions (and tool-call bookkeeping), written to the store and the run's event log.

(`queued → in_progress` happens at the start of the model activity, see `activities/model.py`.)
"""

from __future__ import annotations

import dataclasses

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from assistants.errors import APIError, InvalidRequest, NotFound
from assistants.metrics import Metrics
from assistants.requests import Limits, MessageCreate, RunCreate, parse
from assistants.run_config import resolve_run_fields
from assistants.storable import find_problem, repair
from assistants.store import Store
from workflows.shared import (
    ApplyOutputsInput,
    CompleteStepInput,
    FinishInput,
    FinishResult,
    RecordedRun,
    RecordRunInput,
    RequireActionInput,
    RequireActionResult,
    RunTimeouts,
    ToolOutputInput,
)

log = structlog.get_logger(__name__)

# The error type of a run request that cannot be recorded (unknown assistant, busy thread, …).
INVALID_RUN_REQUEST = "invalid_request_error"


class RunStateActivities:
    def __init__(
        self,
        store: Store,
        *,
        run_expires_after_s: int = 600,
        timeouts: RunTimeouts | None = None,
        metrics: Metrics | None = None,
        max_message_chars: int = Limits.max_message_chars,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._expires_after_s = run_expires_after_s
        self._limits = Limits(max_message_chars=max_message_chars)
        self._timeouts = timeouts or RunTimeouts()

    @activity.defn(name="record_run")
    async def record_run(self, record: RecordRunInput) -> RecordedRun:
        """Store a run started through Temporal as the HTTP API would (validated the same way)."""
        request = record.request
        try:
            # The request came through Temporal's JSON, which carries lone surrogates (and
            # U+0000) as happily as an HTTP body: refused here as the API refuses them.
            problem = find_problem(dataclasses.asdict(request))
            if problem is not None:
                raise InvalidRequest(problem.message, param=problem.param)
            options: dict[str, object] = {"assistant_id": request.assistant_id}
            for name in ("model", "instructions", "additional_instructions"):
                if getattr(request, name) is not None:
                    options[name] = getattr(request, name)
            if request.metadata:
                options["metadata"] = request.metadata
            body = parse(RunCreate, options, self._limits)
            messages = [
                parse(MessageCreate, {"role": m.role, "content": m.content}, self._limits).stored()
                for m in request.messages
            ]
            project_id = await self._store.projects.resolve(request.project_id)
            if project_id is None:
                raise NotFound.object("project", request.project_id)
            assistant = await self._store.assistants.get(
                project_id, request.assistant_id, param="assistant_id"
            )
            fields = resolve_run_fields(
                body,
                assistant,
                expires_after_s=self._expires_after_s,
                additional_instructions=body.additional_instructions,
            )
            run = await self._store.record_run(
                record.run_id, project_id, request.thread_id, messages, fields
            )
        except APIError as error:
            raise ApplicationError(
                error.message, type=INVALID_RUN_REQUEST, non_retryable=True
            ) from None
        log.info(
            "run recorded",
            run_id=run["id"],
            thread_id=run["thread_id"],
            assistant_id=run["assistant_id"],
            project_id=project_id,
        )
        return RecordedRun(
            project_id=project_id,
            thread_id=run["thread_id"],
            model=run["model"],
            expires_at=int(run["expires_at"] or 0),
            timeouts=self._timeouts,
        )

    @activity.defn(name="finish_run")
    async def finish(self, finish: FinishInput) -> FinishResult:
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
        self._metrics.run_finished(run["status"])
        texts = []
        if finish.return_messages:
            texts = await self._store.runs.message_texts(finish.run_id)
        # Read here rather than in an activity of its own: one local activity less per run.
        hooks = await self._store.webhooks.targets(finish.project_id, f"thread.run.{run['status']}")
        return FinishResult(messages=texts, webhooks=hooks, status=run["status"])

    @activity.defn(name="require_action")
    async def require_action(self, action: RequireActionInput) -> RequireActionResult:
        """`in_progress` → `requires_action` for the client's calls (not waiting if a cancel got
        there first), and the webhooks to notify."""
        waiting = await self._store.tool_calls.require_action(
            action.run_id, action.step_id, action.call_ids
        )
        hooks = []
        if waiting:
            hooks = await self._store.webhooks.targets(
                action.project_id, "thread.run.requires_action"
            )
        return RequireActionResult(waiting=waiting, webhooks=hooks)

    @activity.defn(name="apply_tool_outputs")
    async def apply_tool_outputs(self, apply: ApplyOutputsInput) -> bool:
        """The client's staged outputs onto the step; the run back to `queued`."""
        return await self._store.tool_calls.apply_submission(
            apply.run_id, apply.step_id, apply.submission_id
        )

    @activity.defn(name="record_tool_output")
    async def record_tool_output(self, output: ToolOutputInput) -> None:
        await self._store.tool_calls.record_output(
            output.run_id, output.step_id, output.call_id, repair(output.output)
        )

    @activity.defn(name="complete_tool_step")
    async def complete_tool_step(self, step: CompleteStepInput) -> None:
        await self._store.tool_calls.complete_step(step.run_id, step.step_id)

"""`RunWorkflow`: one Assistants run, from `queued` to a terminal status.

The workflow id is the run id. The workflow orchestrates only; every write is an activity. A run is
a loop of model rounds: a round that calls tools runs the worker's registered tools as activities
and hands other calls to the client (`requires_action`), then the next round sees the outputs.
Three things can end a run early, and all three are durable: a `cancel` signal (from
`POST …/cancel`), the expiry timer at `expires_at` (which also bounds the wait for tool outputs),
and a failure that exhausts an activity's retry policy.

Client tool outputs arrive as the `submit_tool_outputs` update. Its validator checks the submission
against the workflow's own state, so a partial, unknown or late submission is rejected before
anything is written, even when it races the expiry timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.model import ModelActivities
    from activities.runs import RunStateActivities
    from activities.tools import TOOL_ERROR, ToolActivities
    from assistants.ids import from_uuid_hex
    from workflows.shared import (
        CANCEL_SIGNAL,
        RUN_NOT_ACTIVE,
        SUBMIT_TOOL_OUTPUTS_UPDATE,
        WORKFLOW_NAME,
        ApplyOutputsInput,
        CompleteStepInput,
        FinishInput,
        GenerateInput,
        RequireActionInput,
        RunInput,
        RunResult,
        ToolCallInput,
        ToolCallRef,
        ToolOutputInput,
        ToolOutputsSubmission,
        Usage,
        submission_problem,
    )

# Store writes are short and idempotent, so they run as local activities (no task-queue round
# trip per transition); retried patiently — a store outage must not strand a run — but bounded.
STATE_TIMEOUT = timedelta(seconds=30)
STATE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=100,
)
RUN_ERROR_CODES = {"server_error", "rate_limit_exceeded", "invalid_prompt"}
# The error type of a rejected or failed `submit_tool_outputs`; the API answers it with a 400.
SUBMISSION_REJECTED = "invalid_request_error"


@dataclass
class _Outcome:
    status: str
    error_code: str | None = None
    error_message: str | None = None
    incomplete_reason: str | None = None


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    def __init__(self) -> None:
        self._cancel_requested = False
        self._usage = Usage()
        # What the validator knows: the status as this workflow drives it, and while the run
        # waits for the client, the calls it waits for.
        self._status = "queued"
        self._pending: list[str] | None = None
        self._pending_step = ""
        self._outputs_applied = False

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancel_requested = True

    @workflow.update(name=SUBMIT_TOOL_OUTPUTS_UPDATE)
    async def submit_tool_outputs(self, submission: ToolOutputsSubmission) -> None:
        step_id = self._pending_step
        self._pending = None  # from here on, a second submission is rejected by the validator
        self._status = "queued"
        applied = await workflow.execute_local_activity_method(
            RunStateActivities.apply_tool_outputs,
            ApplyOutputsInput(
                run_id=workflow.info().workflow_id,
                step_id=step_id,
                submission_id=submission.submission_id,
            ),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary="apply tool outputs",
        )
        if not applied:
            # The run ended (expired or cancelled) in the same instant; the store decided.
            raise ApplicationError(
                f'Runs in status "{self._status}" do not accept tool outputs.',
                type=SUBMISSION_REJECTED,
                non_retryable=True,
            )
        self._outputs_applied = True

    @submit_tool_outputs.validator
    def _validate_submission(self, submission: ToolOutputsSubmission) -> None:
        status = "requires_action" if self._pending is not None else self._status
        problem = submission_problem(status, self._pending or [], submission.call_ids)
        if problem is not None:
            raise ApplicationError(problem[0], problem[1] or "", type=SUBMISSION_REJECTED)

    @workflow.run
    async def run(self, run: RunInput) -> RunResult:
        workflow.logger.info(
            "run started",
            extra={
                "run_id": run.run_id,
                "thread_id": run.thread_id,
                "assistant_id": run.assistant_id,
            },
        )
        body = asyncio.create_task(self._drive(run))
        remaining = max(0.0, run.expires_at - workflow.now().timestamp())
        expires = datetime.fromtimestamp(run.expires_at, tz=UTC).isoformat()
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: body.done() or self._cancel_requested,
                timeout=timedelta(seconds=remaining),
                timeout_summary=f"expire the run at {expires}",
            )
        if body.done():
            outcome = body.result()
        else:
            outcome = _Outcome("cancelled" if self._cancel_requested else "expired")
            self._pending = None
            self._status = outcome.status
            body.cancel()
            # Waits until the in-flight activity has really stopped (it heartbeats, so the
            # cancellation reaches it), so nothing is written after the terminal event.
            with contextlib.suppress(asyncio.CancelledError, ActivityError):
                await body
        self._status = outcome.status
        await workflow.execute_local_activity_method(
            RunStateActivities.finish,
            FinishInput(
                run_id=run.run_id,
                status=outcome.status,
                usage=self._usage if self._usage.total_tokens else None,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
                incomplete_reason=outcome.incomplete_reason,
            ),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary=f"finish run: {outcome.status}",
        )
        # An update handler that raced the end must finish (and answer its caller) first.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("run finished", extra={"run_id": run.run_id, "status": outcome.status})
        return RunResult(
            run_id=run.run_id,
            status=outcome.status,
            usage=self._usage,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
        )

    async def _drive(self, run: RunInput) -> _Outcome:
        t = run.timeouts
        for _ in range(t.max_model_rounds):
            call = GenerateInput(
                run_id=run.run_id,
                step_id=self._new_id("step"),
                message_id=self._new_id("msg"),
                tool_step_id=self._new_id("step"),
                prompt_tokens_used=self._usage.prompt_tokens,
                completion_tokens_used=self._usage.completion_tokens,
            )
            # The model activity itself moves the run `queued → in_progress` before it calls the
            # model: a separate activity would cost a workflow-task round trip on the way to the
            # first token. If the run is already `cancelling`, it reports RUN_NOT_ACTIVE.
            self._status = "in_progress"
            try:
                result = await workflow.execute_activity_method(
                    ModelActivities.generate,
                    call,
                    start_to_close_timeout=timedelta(seconds=t.model_call_s),
                    heartbeat_timeout=timedelta(seconds=t.model_heartbeat_s),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=t.retry_initial_s),
                        maximum_interval=timedelta(seconds=t.retry_max_interval_s),
                        maximum_attempts=t.retry_max_attempts,
                    ),
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=f"call model {run.model}",
                )
            except ActivityError as error:
                if _is_run_not_active(error):
                    return await self._cancelled()
                return _failure(error)
            self._usage.add(result.usage)
            if result.finish == "length":
                return _Outcome("incomplete", incomplete_reason="max_completion_tokens")
            if result.finish == "prompt_limit":
                return _Outcome("incomplete", incomplete_reason="max_prompt_tokens")
            if result.finish != "tool_calls":
                return _Outcome("completed")
            outcome = await self._tool_round(run, call.tool_step_id, result.tool_calls)
            if outcome is not None:
                return outcome
        return _Outcome(
            "failed",
            error_code="server_error",
            error_message=f"The run stopped after {t.max_model_rounds} model calls: the model "
            "kept calling tools.",
        )

    async def _tool_round(
        self, run: RunInput, step_id: str, calls: list[ToolCallRef]
    ) -> _Outcome | None:
        """Answer one round's tool calls; an outcome only if the round ends the run."""
        registered = [c for c in calls if c.policy is not None]
        if registered:
            failures = await asyncio.gather(
                *(self._run_registered(run, step_id, c) for c in registered)
            )
            for failure in failures:
                if failure is not None:
                    return failure
        client_calls = [c.call_id for c in calls if c.policy is None]
        if not client_calls:
            await workflow.execute_local_activity_method(
                RunStateActivities.complete_tool_step,
                CompleteStepInput(run_id=run.run_id, step_id=step_id),
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary="tool outputs recorded",
            )
            return None
        self._pending, self._pending_step, self._outputs_applied = client_calls, step_id, False
        waiting = await workflow.execute_local_activity_method(
            RunStateActivities.require_action,
            RequireActionInput(run_id=run.run_id, step_id=step_id, call_ids=client_calls),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary=f"require action: {len(client_calls)} tool call(s)",
        )
        if not waiting:
            self._pending = None
            return await self._cancelled()
        self._status = "requires_action"
        # No timer here: the run's expiry timer (in `run`) bounds this wait.
        await workflow.wait_condition(lambda: self._outputs_applied)
        return None

    async def _run_registered(
        self, run: RunInput, step_id: str, call: ToolCallRef
    ) -> _Outcome | None:
        policy = call.policy
        assert policy is not None
        try:
            await workflow.execute_activity_method(
                ToolActivities.run_tool,
                ToolCallInput(
                    run_id=run.run_id, step_id=step_id, call_id=call.call_id, name=call.name
                ),
                start_to_close_timeout=timedelta(seconds=policy.timeout_s),
                heartbeat_timeout=timedelta(seconds=policy.heartbeat_timeout_s),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=policy.max_attempts,
                    non_retryable_error_types=[TOOL_ERROR],
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"run tool {call.name}",
            )
            return None
        except ActivityError as error:
            message = _error_message(error)
        workflow.logger.info(
            "tool failed", extra={"run_id": run.run_id, "tool": call.name, "error": message}
        )
        if policy.on_error == "fail":
            return _Outcome(
                "failed",
                error_code="server_error",
                error_message=f"The function tool {call.name} failed: {message}",
            )
        await workflow.execute_local_activity_method(
            RunStateActivities.record_tool_output,
            ToolOutputInput(
                run_id=run.run_id,
                step_id=step_id,
                call_id=call.call_id,
                output=json.dumps({"error": message}),
            ),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary=f"record error of tool {call.name}",
        )
        return None

    async def _cancelled(self) -> _Outcome:
        # The store already says `cancelling`; the signal is on its way.
        await workflow.wait_condition(lambda: self._cancel_requested)
        return _Outcome("cancelled")

    @staticmethod
    def _new_id(prefix: str) -> str:
        return from_uuid_hex(prefix, workflow.uuid4().hex)


def _is_run_not_active(error: ActivityError) -> bool:
    return isinstance(error.cause, ApplicationError) and error.cause.type == RUN_NOT_ACTIVE


def _error_message(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        return "The call timed out."
    return str(cause or error)


def _failure(error: ActivityError) -> _Outcome:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        code = cause.type if cause.type in RUN_ERROR_CODES else "server_error"
        return _Outcome("failed", error_code=code, error_message=cause.message)
    if isinstance(cause, TimeoutError):
        return _Outcome(
            "failed", error_code="server_error", error_message="The model call timed out."
        )
    return _Outcome("failed", error_code="server_error", error_message=str(cause or error))

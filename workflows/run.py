"""`RunWorkflow`: one Assistants run, from `queued` to a terminal status.

The workflow id is the run id. The workflow orchestrates only: state transitions, the model call
and the final bookkeeping are activities. Three things can end a run early, and all three are
durable: a `cancel` signal (from `POST …/cancel`), the expiry timer at `expires_at`, and a failure
that exhausts the model call's retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.model import ModelActivities
    from activities.runs import RunStateActivities
    from assistants.ids import from_uuid_hex
    from workflows.shared import (
        CANCEL_SIGNAL,
        RUN_NOT_ACTIVE,
        WORKFLOW_NAME,
        FinishInput,
        GenerateInput,
        RunInput,
        RunResult,
        Usage,
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

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancel_requested = True

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
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: body.done() or self._cancel_requested, timeout=timedelta(seconds=remaining)
            )
        if body.done():
            outcome = body.result()
        else:
            outcome = _Outcome("cancelled" if self._cancel_requested else "expired")
            body.cancel()
            # Waits until the in-flight activity has really stopped (it heartbeats, so the
            # cancellation reaches it), so nothing is written after the terminal event.
            with contextlib.suppress(asyncio.CancelledError, ActivityError):
                await body
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
        )
        workflow.logger.info("run finished", extra={"run_id": run.run_id, "status": outcome.status})
        return RunResult(
            run_id=run.run_id,
            status=outcome.status,
            usage=self._usage,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
        )

    async def _drive(self, run: RunInput) -> _Outcome:
        # The model activity itself moves the run `queued → in_progress` before it calls the
        # model: a separate activity would cost a workflow-task round trip on the way to the
        # first token. If the run is already `cancelling`, the activity reports RUN_NOT_ACTIVE.
        t = run.timeouts
        call = GenerateInput(
            run_id=run.run_id,
            step_id=from_uuid_hex("step", workflow.uuid4().hex),
            message_id=from_uuid_hex("msg", workflow.uuid4().hex),
            prompt_tokens_used=self._usage.prompt_tokens,
            completion_tokens_used=self._usage.completion_tokens,
        )
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
            )
        except ActivityError as error:
            if isinstance(error.cause, ApplicationError) and error.cause.type == RUN_NOT_ACTIVE:
                # The store already says `cancelling`; the signal is on its way.
                await workflow.wait_condition(lambda: self._cancel_requested)
                return _Outcome("cancelled")
            return _failure(error)
        self._usage.add(result.usage)
        if result.finish == "length":
            return _Outcome("incomplete", incomplete_reason="max_completion_tokens")
        if result.finish == "prompt_limit":
            return _Outcome("incomplete", incomplete_reason="max_prompt_tokens")
        return _Outcome("completed")


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

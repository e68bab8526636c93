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
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.model import ModelActivities
    from activities.runs import RunStateActivities
    from activities.tools import TOOL_ERROR, ToolActivities
    from assistants.ids import from_uuid_hex
    from assistants.tool_outputs import submission_problem
    from workflows.calls import cause, execute, stop_of
    from workflows.code_calls import CodeInterpreterUnavailable, run_code_calls
    from workflows.file_search_calls import run_file_search_calls
    from workflows.search_attributes import RUN_STATUS, run_attributes
    from workflows.shared import (
        CANCEL_SIGNAL,
        FILES_PENDING,
        RUN_ENDS,
        RUN_NOT_ACTIVE,
        SUBMIT_TOOL_OUTPUTS_UPDATE,
        WORKER_STOPPING,
        WORKFLOW_NAME,
        ApplyOutputsInput,
        CompleteStepInput,
        FinishInput,
        FinishResult,
        GenerateInput,
        GenerateResult,
        RecordRunInput,
        RequireActionInput,
        RunInput,
        RunResult,
        ToolCallInput,
        ToolCallRef,
        ToolOutputInput,
        ToolOutputsSubmission,
        Usage,
        WebhookDelivery,
    )
    from workflows.webhook_delivery import (
        WebhookDeliveryWorkflow,
        deliver,
        delivery_workflow_id,
    )

# Store writes are short and idempotent, so they run as local activities (no task-queue round
# trip per transition); retried patiently — a store outage must not strand a run — but bounded.
STATE_TIMEOUT = timedelta(seconds=30)
STATE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=100,
)
FILES_PENDING_POLL = timedelta(seconds=1)
RUN_ERROR_CODES = {"server_error", "rate_limit_exceeded", "invalid_prompt"}
# The error type of a rejected or failed `submit_tool_outputs`; the API answers it with a 400.
SUBMISSION_REJECTED = "invalid_request_error"
# The patch that made model rounds local activities (runs started before it call the model as
# a regular activity until they end).
MODEL_ROUND_LOCAL = "model-round-local"
# The patch after which a run that the model's answer ended (in the answer's commit) needs no
# `finish_run`: the model activity reports the end and the webhooks to notify.
ANSWER_ENDS_RUN = "answer-ends-run"
# The patch after which each webhook delivery is a workflow of its own that the run does not
# wait for (`WebhookDeliveryWorkflow`); runs started before it deliver as their own activities
# and close once those have succeeded or given up.
DETACHED_WEBHOOKS = "detached-webhooks"
# The patch after which a tool step the worker answered is completed by the next model round's
# first commit instead of by `complete_tool_step` (one local activity and one commit less per
# tool round).
TOOL_STEP_IN_NEXT_ROUND = "tool-step-in-next-round"


class HandOver(RuntimeError):
    """Raised in workflow code to fail the current workflow task, so that Temporal retries it
    on another worker (an exception that is not a Temporal failure fails the task, not the
    workflow)."""


@dataclass
class _Outcome:
    status: str
    error_code: str | None = None
    error_message: str | None = None
    incomplete_reason: str | None = None
    # The model's answer ended the run in the store (GenerateResult.ended).
    ended: FinishResult | None = None


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    def __init__(self) -> None:
        self._cancel_requested = False
        self._usage = Usage()
        # What the validator knows: the status as this workflow drives it, and while the run
        # waits for the client, the calls it waits for.
        self._status = "queued"
        self._published_status = "queued"  # the RunStatus search attribute as last set
        self._pending: list[str] | None = None
        self._pending_step = ""
        self._outputs_applied = False
        self._client_round = False  # the last tool round waited for the client's outputs
        self._input: RunInput | None = None
        self._deliveries: list[asyncio.Task[None]] = []

    def _set_status(self, status: str) -> None:
        """Track the status for the validator and keep the `RunStatus` search attribute current
        (the store's status is authoritative; this one is for operators)."""
        self._status = status
        if status == self._published_status:
            return
        self._published_status = status
        if self._input is not None and self._input.search_attributes:
            workflow.upsert_search_attributes([RUN_STATUS.value_set(status)])

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancel_requested = True
        if self._status not in ("completed", "failed", "cancelled", "expired", "incomplete"):
            self._set_status("cancelling")

    @workflow.update(name=SUBMIT_TOOL_OUTPUTS_UPDATE)
    async def submit_tool_outputs(self, submission: ToolOutputsSubmission) -> None:
        step_id = self._pending_step
        self._pending = None  # from here on, a second submission is rejected by the validator
        self._set_status("queued")
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
        if run.request is not None:
            run = await self._record(run)
        self._input = run
        if run.search_attributes and run.request is not None:
            # An HTTP-started run got these at its start; a service-started one knows them now.
            workflow.upsert_search_attributes(
                run_attributes(
                    status=self._status,
                    assistant_id=run.assistant_id,
                    thread_id=run.thread_id,
                    project_id=run.project_id,
                    model=run.model,
                )
            )
        workflow.logger.info(
            "run started",
            extra={
                "run_id": run.run_id,
                "thread_id": run.thread_id,
                "assistant_id": run.assistant_id,
                "project_id": run.project_id,
                "request_id": run.request_id,
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
        self._set_status(outcome.status)
        return_messages = run.request is not None and run.request.return_messages
        if outcome.ended is not None and not return_messages and workflow.patched(ANSWER_ENDS_RUN):
            # The answer's commit ended the run and its activity read the webhooks: nothing is
            # left to write (runs started before the patch, and a trigger that wants the
            # messages back, still call `finish_run`, which then finds the run ended).
            finished = outcome.ended
        else:
            finished = await workflow.execute_local_activity_method(
                RunStateActivities.finish,
                FinishInput(
                    project_id=run.project_id,
                    run_id=run.run_id,
                    status=outcome.status,
                    usage=self._usage if self._usage.total_tokens else None,
                    error_code=outcome.error_code,
                    error_message=outcome.error_message,
                    incomplete_reason=outcome.incomplete_reason,
                    return_messages=return_messages,
                ),
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary=f"finish run: {outcome.status}",
            )
        if finished.status and finished.status != outcome.status:
            # The model's answer ended the run in the store just before the timer or the cancel
            # won here: the store's status stands.
            outcome = _Outcome(finished.status)
            self._set_status(outcome.status)
        self._notify(run, f"thread.run.{outcome.status}", finished.webhooks)
        # Webhook deliveries and an update handler that raced the end finish first.
        await asyncio.gather(*self._deliveries)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("run finished", extra={"run_id": run.run_id, "status": outcome.status})
        return RunResult(
            run_id=run.run_id,
            status=outcome.status,
            usage=self._usage,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            thread_id=run.thread_id,
            messages=finished.messages,
        )

    async def _record(self, run: RunInput) -> RunInput:
        """A run started through Temporal (`assistants.trigger`): put it in the store first."""
        assert run.request is not None
        try:
            recorded = await workflow.execute_local_activity_method(
                RunStateActivities.record_run,
                RecordRunInput(run_id=run.run_id, request=run.request),
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary=f"record the run of assistant {run.request.assistant_id}",
            )
        except (ActivityError, ApplicationError) as error:
            # Unknown assistant, busy thread, bad input: the caller's child workflow fails with
            # the API's own message. (A local activity's final failure is its ApplicationError.)
            raise ApplicationError(
                _error_message(error), type="invalid_request_error", non_retryable=True
            ) from None
        return dataclasses.replace(
            run,
            project_id=recorded.project_id or run.project_id,
            thread_id=recorded.thread_id,
            model=recorded.model,
            expires_at=recorded.expires_at,
            timeouts=recorded.timeouts,
        )

    def _notify(self, run: RunInput, event: str, webhooks: list[str]) -> None:
        """POST `event` to the project's subscribed webhooks: each delivery a workflow of its
        own (`WebhookDeliveryWorkflow`), started in the background and not waited for (`run`
        waits only until each has started). Runs from before the `detached-webhooks` patch
        deliver as their own activities, with retries, and wait for them before they return.
        A delivery that gives up never fails the run."""
        if webhooks and workflow.patched(DETACHED_WEBHOOKS):
            self._deliveries.extend(
                asyncio.create_task(self._start_delivery(run, event, w)) for w in webhooks
            )
            return

        async def deliver_here(webhook_id: str) -> None:
            await deliver(
                WebhookDelivery(
                    webhook_id=webhook_id,
                    run_id=run.run_id,
                    event=event,
                    delivery_id=self._new_id("evt"),
                )
            )

        self._deliveries.extend(asyncio.create_task(deliver_here(w)) for w in webhooks)

    async def _start_delivery(self, run: RunInput, event: str, webhook_id: str) -> None:
        delivery = WebhookDelivery(
            webhook_id=webhook_id, run_id=run.run_id, event=event, delivery_id=self._new_id("evt")
        )
        try:
            await workflow.start_child_workflow(
                WebhookDeliveryWorkflow.run,
                delivery,
                id=delivery_workflow_id(delivery),
                # The delivery goes on after this run's workflow has closed.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"webhook {webhook_id}: {event}",
            )
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as error:
            # Never the run's failure (a reset run whose delivery already exists, say).
            workflow.logger.warning(
                "webhook delivery not started",
                extra={"run_id": run.run_id, "webhook_id": webhook_id, "error": str(error)},
            )

    async def _drive(self, run: RunInput) -> _Outcome:
        t = run.timeouts
        answered_step: str | None = None  # the tool step the next round completes
        for round_index in range(t.max_model_rounds):
            call = GenerateInput(
                round_index=round_index,
                run_id=run.run_id,
                step_id=self._new_id("step"),
                message_id=self._new_id("msg"),
                tool_step_id=self._new_id("step"),
                prompt_tokens_used=self._usage.prompt_tokens,
                completion_tokens_used=self._usage.completion_tokens,
                request_id=run.request_id,
                completes_step_id=answered_step,
            )
            # The model activity itself moves the run `queued → in_progress` before it calls the
            # model: a separate activity would cost a workflow-task round trip on the way to the
            # first token. If the run is already `cancelling`, it reports RUN_NOT_ACTIVE.
            if not self._cancel_requested:
                self._set_status("in_progress")
            try:
                # After the client's outputs the round is a regular activity: the update that
                # delivered them is acknowledged when this workflow task completes, which a
                # local activity would hold back for the whole model call.
                result = await self._generate(run, call, local=not self._client_round)
            except (ActivityError, ApplicationError) as error:
                stopped = await self._stopped(error)
                if stopped is not None:
                    return stopped
                return _failure(cause(error), error)
            self._usage.add(result.usage)
            if result.finish != "tool_calls":
                status, reason = RUN_ENDS.get(result.finish, RUN_ENDS["stop"])
                return _Outcome(status, incomplete_reason=reason, ended=result.ended)
            last = round_index + 1 == t.max_model_rounds
            try:
                outcome, answered_step = await self._tool_round(
                    run, call.tool_step_id, result.tool_calls, last=last
                )
            except (ActivityError, ApplicationError) as error:
                # A local activity of the round (a registered tool with `local=True`, a
                # search) stopped because the run ended or the worker is stopping.
                stopped = await self._stopped(error)
                if stopped is None:
                    raise
                return stopped
            if outcome is not None:
                return outcome
        return _Outcome(
            "failed",
            error_code="server_error",
            error_message=f"The run stopped after {t.max_model_rounds} model calls: the model "
            "kept calling tools.",
        )

    async def _stopped(self, error: ActivityError | ApplicationError) -> _Outcome | None:
        """What a local activity's stop means for the run (None: it is a failure). Its run was
        no longer in progress: the cancel signal is on its way. Its worker is stopping: this
        workflow task fails (not the run), so nothing of it is recorded, and Temporal gives the
        task to another worker at once, which runs the activity again."""
        stop = stop_of(error)
        if stop == RUN_NOT_ACTIVE:
            return await self._cancelled()
        if stop == WORKER_STOPPING:
            raise HandOver("the worker stopped during a local activity") from None
        return None

    async def _generate(self, run: RunInput, call: GenerateInput, local: bool) -> GenerateResult:
        t = run.timeouts
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=t.retry_initial_s),
            maximum_interval=timedelta(seconds=t.retry_max_interval_s),
            maximum_attempts=t.retry_max_attempts,
        )
        while True:
            # A local activity runs inside the workflow task that scheduled it, so the first
            # round starts in the eagerly returned first task without a round trip to the
            # server, and a plain run is one workflow task with no activity events. Its worker
            # holds the task meanwhile (the SDK heartbeats it), so a cancel signal reaches this
            # code only at the next task: the activity watches the store's `cancelling` itself.
            # A dead worker's round runs again after the workflow-task timeout, and finds in the
            # store what it had written. Runs started before MODEL_ROUND_LOCAL call the model
            # as a regular activity (tests/replay/README.md).
            result: GenerateResult = await execute(
                ModelActivities.generate,
                call,
                local=workflow.patched(MODEL_ROUND_LOCAL) and local,
                start_to_close=timedelta(seconds=t.model_call_s),
                heartbeat=timedelta(seconds=t.model_heartbeat_s),
                retry=retry,
                summary=f"call model {run.model}",
            )
            if result.finish != FILES_PENDING:
                return result
            # file_search: the thread's store still ingests attached files (the activity bounds
            # the wait to a minute from the run's start). A durable timer, then ask again.
            await workflow.sleep(FILES_PENDING_POLL, summary="wait for the thread's files")

    async def _tool_round(
        self, run: RunInput, step_id: str, calls: list[ToolCallRef], *, last: bool
    ) -> tuple[_Outcome | None, str | None]:
        """Answer one round's tool calls: an outcome only if the round ends the run, and the
        step if the worker answered all its calls and the next round is to complete it (not
        after the `last` round allowed, which no round follows)."""
        self._client_round = False
        registered = [c for c in calls if c.policy is not None]
        if registered:
            # Every call settles before a local call's stop propagates: a sibling left running
            # would write its output after the run's terminal event.
            settled = await asyncio.gather(
                *(self._run_registered(run, step_id, c) for c in registered),
                return_exceptions=True,
            )
            for outcome in settled:
                if isinstance(outcome, BaseException):
                    raise outcome
            for failure in settled:
                if isinstance(failure, _Outcome):
                    return failure, None
        code_calls = [c for c in calls if c.kind == "code_interpreter"]
        if code_calls:
            # Run in the thread's sandbox session, never by the client (workflows/code_calls.py).
            try:
                await run_code_calls(run, step_id, code_calls)
            except CodeInterpreterUnavailable as error:
                failed = _Outcome("failed", error_code="server_error", error_message=str(error))
                return failed, None
        search_calls = [c for c in calls if c.kind == "file_search"]
        if search_calls:
            # Searched by the worker, never the client (workflows/file_search_calls.py).
            search_failure = await run_file_search_calls(run, step_id, search_calls)
            if search_failure is not None:
                failed = _Outcome("failed", error_code="server_error", error_message=search_failure)
                return failed, None
        client_calls = [c.call_id for c in calls if c.policy is None and c.kind == "function"]
        if not client_calls:
            if not last and workflow.patched(TOOL_STEP_IN_NEXT_ROUND):
                return None, step_id  # the next round's first commit completes the step
            await workflow.execute_local_activity_method(
                RunStateActivities.complete_tool_step,
                CompleteStepInput(run_id=run.run_id, step_id=step_id),
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary="tool outputs recorded",
            )
            return None, None
        self._pending, self._pending_step, self._outputs_applied = client_calls, step_id, False
        self._client_round = True
        action = await workflow.execute_local_activity_method(
            RunStateActivities.require_action,
            RequireActionInput(
                run_id=run.run_id,
                step_id=step_id,
                call_ids=client_calls,
                project_id=run.project_id,
            ),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary=f"require action: {len(client_calls)} tool call(s)",
        )
        if not action.waiting:
            self._pending = None
            return await self._cancelled(), None
        self._set_status("requires_action")
        self._notify(run, "thread.run.requires_action", action.webhooks)
        # No timer here: the run's expiry timer (in `run`) bounds this wait.
        await workflow.wait_condition(lambda: self._outputs_applied)
        return None, None

    async def _run_registered(
        self, run: RunInput, step_id: str, call: ToolCallRef
    ) -> _Outcome | None:
        policy = call.policy
        assert policy is not None
        tool_call = ToolCallInput(
            run_id=run.run_id,
            step_id=step_id,
            call_id=call.call_id,
            name=call.name,
            request_id=run.request_id,
        )
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=policy.max_attempts,
            non_retryable_error_types=[TOOL_ERROR],
        )
        try:
            # `@function_tool(local=True)`: inside this workflow task, with no round trip to the
            # server to schedule the call or to report its output (the policy was recorded with
            # the model round's result, so a replay takes the same branch).
            await execute(
                ToolActivities.run_tool,
                tool_call,
                local=policy.local,
                start_to_close=timedelta(seconds=policy.timeout_s),
                heartbeat=timedelta(seconds=policy.heartbeat_timeout_s),
                retry=retry,
                summary=f"run tool {call.name}",
            )
            return None
        except (ActivityError, ApplicationError) as error:
            if stop_of(error) is not None:
                raise  # a local call's stop, not the tool's failure: see `_stopped`
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


def _error_message(error: ActivityError | ApplicationError) -> str:
    failure = cause(error)
    if isinstance(failure, ApplicationError):
        return failure.message
    if isinstance(failure, TimeoutError):
        return "The call timed out."
    return str(failure or error)


def _failure(cause: BaseException | None, error: Exception) -> _Outcome:
    if isinstance(cause, ApplicationError):
        code = cause.type if cause.type in RUN_ERROR_CODES else "server_error"
        return _Outcome("failed", error_code=code, error_message=cause.message)
    if isinstance(cause, TimeoutError):
        return _Outcome(
            "failed", error_code="server_error", error_message="The model call timed out."
        )
    return _Outcome("failed", error_code="server_error", error_message=str(cause or error))

"""The run's side of code_interpreter: answer a round's `python` calls, one at a time, in the
thread's session.

Per call: `ci_claim` on the shared sandbox queue finds (or assigns) the thread's session host,
then `ci_execute` runs the code on that host's own queue. Code is not idempotent, so `ci_execute`
has exactly one attempt; if the host dies (heartbeat timeout) or never picks the call up
(schedule-to-start timeout), the call's logs say the session was lost, the thread's session
record forgets that host, and the run goes on — the model decides what to do next. Only when no
sandbox can be had at all does the run fail ("code interpreter unavailable").
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from workflows.code_shared import (
        LOST_SIGNAL,
        ClaimInput,
        ExecuteInput,
        LostInput,
        session_workflow_id,
    )
    from workflows.shared import RunInput, ToolCallRef

# How long a call may wait for its host to pick it up, and how often a running execution must
# beat: a dead host is noticed within these, not at the execution timeout.
SCHEDULE_TO_START = timedelta(seconds=10)
HEARTBEAT = timedelta(seconds=10)
RECORD_TIMEOUT = timedelta(seconds=30)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=100,
)
LOST_MESSAGE = "[session lost: {reason}; variables were lost, the next call starts a new session]"


class CodeInterpreterUnavailable(Exception):
    """No sandbox could be had: the run fails with this message."""


async def run_code_calls(run: RunInput, step_id: str, calls: list[ToolCallRef]) -> None:
    t = run.timeouts
    for call in calls:
        try:
            host = await workflow.execute_activity(
                "ci_claim",
                ClaimInput(thread_id=run.thread_id),
                result_type=str,
                task_queue=t.sandbox_task_queue,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=120),
                retry_policy=RetryPolicy(
                    maximum_attempts=5, non_retryable_error_types=["SandboxUnavailable"]
                ),
                summary="find the thread's code_interpreter session",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            if "code interpreter unavailable" not in message:
                message = f"code interpreter unavailable: no sandbox worker answered ({message})"
            raise CodeInterpreterUnavailable(message) from None
        try:
            await workflow.execute_activity(
                "ci_execute",
                ExecuteInput(
                    run_id=run.run_id,
                    step_id=step_id,
                    call_id=call.call_id,
                    thread_id=run.thread_id,
                    timeout_s=t.code_execution_s,
                    request_id=run.request_id,
                ),
                task_queue=host,
                schedule_to_start_timeout=SCHEDULE_TO_START,
                # The execution's own limit, the interrupt grace and file transfers.
                start_to_close_timeout=timedelta(seconds=t.code_execution_s + 120),
                heartbeat_timeout=HEARTBEAT,
                # Never re-run code: a retry could append to a file twice or repeat a side effect.
                retry_policy=RetryPolicy(maximum_attempts=1),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary="run code_interpreter code",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise
            if isinstance(error.cause, TimeoutError):
                reason = "the sandbox host stopped responding"
            else:
                reason = f"the execution failed on the sandbox host ({error.cause or error})"
            workflow.logger.warning(
                "code_interpreter host lost",
                extra={"run_id": run.run_id, "thread_id": run.thread_id, "host_queue": host},
            )
            await workflow.execute_local_activity(
                "ci_record_lost",
                LostInput(
                    run_id=run.run_id,
                    step_id=step_id,
                    call_id=call.call_id,
                    message=LOST_MESSAGE.format(reason=reason),
                ),
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
                summary="record the lost session",
            )
            session = workflow.get_external_workflow_handle(session_workflow_id(run.thread_id))
            # If the session workflow ended meanwhile, there is nothing to forget.
            with contextlib.suppress(Exception):
                await session.signal(LOST_SIGNAL, host)

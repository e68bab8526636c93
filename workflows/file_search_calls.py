"""The run's side of file_search: answer a round's `file_search` calls, each as an activity.

The calls of one round run concurrently. An activity only ever returns nothing (the results are
on the step, read back by the next model round by id). A store that cannot be used (expired,
deleted) fails the call without retries and ends the run with a clear `last_error`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from workflows.shared import RunInput, ToolCallInput, ToolCallRef

SEARCH_TIMEOUT = timedelta(seconds=60)
SEARCH_HEARTBEAT = timedelta(seconds=10)
SEARCH_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["vector_store_unavailable"],
)


async def run_file_search_calls(
    run: RunInput, step_id: str, calls: list[ToolCallRef]
) -> str | None:
    """Run the calls; the message to fail the run with, or None."""

    async def one(call: ToolCallRef) -> str | None:
        try:
            await workflow.execute_activity(
                "file_search",
                ToolCallInput(
                    run_id=run.run_id,
                    step_id=step_id,
                    call_id=call.call_id,
                    name=call.name,
                    request_id=run.request_id,
                ),
                start_to_close_timeout=SEARCH_TIMEOUT,
                heartbeat_timeout=SEARCH_HEARTBEAT,
                retry_policy=SEARCH_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary="file_search",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise
            cause = error.cause
            return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        return None

    failures = await asyncio.gather(*(one(c) for c in calls))
    return next((f for f in failures if f is not None), None)

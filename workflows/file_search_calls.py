"""The run's side of file_search: answer a round's `file_search` calls, each as an activity.

The calls of one round run concurrently. An activity only ever returns nothing (the results are
on the step, read back by the next model round by id). A store that cannot be used (expired,
deleted) fails the call without retries and ends the run with a clear `last_error`.

Since the `file-search-local` patch each call is a local activity: a search takes milliseconds
to seconds, and as a regular activity it cost two round trips to the Temporal server (the
workflow task's completion that schedules it, the activity's completion that schedules the
next task) and a dispatch through the task queue, about 18 ms on the 2-core machine. A cancelled
run stops a search waiting on the embedding service through the worker's run watch
(activities/run_watch.py), since the cancel signal reaches the workflow only at its next task.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from workflows.shared import LOCAL_STOPS, RunInput, ToolCallInput, ToolCallRef

# The patch that made each search a local activity (runs started before it search in regular
# activities until they end).
FILE_SEARCH_LOCAL = "file-search-local"

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

    # Once per round, before any call is scheduled: a replay of a run from before the patch
    # schedules regular activities, as it did.
    local = workflow.patched(FILE_SEARCH_LOCAL)

    async def one(call: ToolCallRef) -> str | None:
        search = ToolCallInput(
            run_id=run.run_id,
            step_id=step_id,
            call_id=call.call_id,
            name=call.name,
            request_id=run.request_id,
        )
        try:
            if local:
                await workflow.execute_local_activity(
                    "file_search",
                    search,
                    start_to_close_timeout=SEARCH_TIMEOUT,
                    retry_policy=SEARCH_RETRY,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary="file_search",
                )
            else:
                await workflow.execute_activity(
                    "file_search",
                    search,
                    start_to_close_timeout=SEARCH_TIMEOUT,
                    heartbeat_timeout=SEARCH_HEARTBEAT,
                    retry_policy=SEARCH_RETRY,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary="file_search",
                )
        except (ActivityError, ApplicationError) as error:
            # A local activity's final failure arrives as its own ApplicationError.
            cause = error.cause if isinstance(error, ActivityError) else error
            if isinstance(cause, CancelledError):
                raise
            if isinstance(cause, ApplicationError) and cause.type in LOCAL_STOPS:
                raise  # the run ended or the worker is stopping: RunWorkflow._stopped
            return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        return None

    # Every search settles before a stop propagates (none is left running after the run ends).
    settled = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for outcome in settled:
        if isinstance(outcome, BaseException):
            raise outcome
    return next((f for f in settled if isinstance(f, str)), None)

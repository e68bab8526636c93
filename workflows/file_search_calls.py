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
    from workflows.calls import cause, execute, stop_of
    from workflows.shared import RunInput, ToolCallInput, ToolCallRef

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
            await execute(
                "file_search",
                search,
                local=local,
                start_to_close=SEARCH_TIMEOUT,
                heartbeat=SEARCH_HEARTBEAT,
                retry=SEARCH_RETRY,
                summary="file_search",
            )
        except (ActivityError, ApplicationError) as error:
            failure = cause(error)
            if isinstance(failure, CancelledError) or stop_of(error) is not None:
                raise  # cancelled, or the run ended or the worker is stopping: RunWorkflow
            if isinstance(failure, ApplicationError):
                return failure.message
            return str(failure or error)
        return None

    # Every search settles before a stop propagates (none is left running after the run ends).
    settled = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for outcome in settled:
        if isinstance(outcome, BaseException):
            raise outcome
    return next((f for f in settled if isinstance(f, str)), None)

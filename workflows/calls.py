"""One activity call of a run's round, as a local activity or a regular one, and how its failure
reads.

Model rounds, registered tools and file_search calls each run either way: as a local activity
(inside the workflow task, no round trip to the Temporal server) or, for runs started before a
patch and for tools not registered `local=True`, as a regular activity that heartbeats. The
options are the same but for the heartbeat, which a local activity cannot send. A local activity
stopped by its run watch or by its worker's shutdown fails with one of `LOCAL_STOPS`: not the
call's failure, but what `RunWorkflow._stopped` turns into a cancelled run or a handed-over task.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.shared import LOCAL_STOPS


async def execute(
    activity: Any,
    arg: Any,
    *,
    local: bool,
    start_to_close: timedelta,
    heartbeat: timedelta,
    retry: RetryPolicy,
    summary: str,
) -> Any:
    """Run `activity` (a function or method defined with `@activity.defn`, or its name) with
    `arg`, and wait until it has stopped if the workflow cancels it."""
    if local:
        return await workflow.execute_local_activity(
            activity,
            arg,
            start_to_close_timeout=start_to_close,
            retry_policy=retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )
    return await workflow.execute_activity(
        activity,
        arg,
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )


def cause(error: ActivityError | ApplicationError) -> BaseException | None:
    """A local activity's final failure arrives as its own ApplicationError; a regular
    activity's (and a local one's timeout or cancellation) wrapped in ActivityError."""
    return error.cause if isinstance(error, ActivityError) else error


def stop_of(error: ActivityError | ApplicationError) -> str | None:
    """The local activity's stop (`RUN_NOT_ACTIVE`, `WORKER_STOPPING`), or None for a failure."""
    failure = cause(error)
    if isinstance(failure, ApplicationError) and failure.type in LOCAL_STOPS:
        return failure.type
    return None

"""Keep a long activity heartbeating while it waits on I/O.

Heartbeats are how Temporal notices a dead worker (the heartbeat timeout fires and the activity is
retried elsewhere) and how a cancellation request reaches a running activity (the SDK delivers it
as `CancelledError` on the next heartbeat's response). A model can be silent for a long time before
its first token, so beating only per chunk is not enough: a background task beats at a third of
the heartbeat timeout.

A local activity cannot heartbeat: it runs inside its workflow's task, and is cancelled by the
workflow, which hears of a cancel signal only at its next workflow task (the SDK heartbeats
that task every few seconds while the activity runs). Such an activity passes an `unwanted`
wait instead (the model call: until its run is no longer `in_progress` in the store, which one
watch per worker reads for all its rounds: activities/run_watch.py); when it returns, the body
is cancelled and `NoLongerWanted` raised. Nor does the SDK cancel a local activity when its
worker shuts down: it waits for it, however long. So the watch also gives the body
`shutdown_grace_s` from the start of a shutdown, then cancels it and raises `WorkerStopping`
(the workflow then hands the task to another worker: workflows/run.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.shared import RUN_NOT_ACTIVE, WORKER_STOPPING


class NoLongerWanted(Exception):
    """A local activity's `unwanted` wait returned: its body was stopped."""


class WorkerStopping(Exception):
    """The worker is shutting down and the grace period has passed: the body was stopped."""


@asynccontextmanager
async def heartbeating(
    unwanted: Callable[[], Awaitable[None]] | None = None,
    *,
    shutdown_grace_s: float = 10.0,
) -> AsyncIterator[None]:
    info = activity.info()
    if info.is_local:
        async with _watching(unwanted, shutdown_grace_s):
            yield
        return
    timeout = info.heartbeat_timeout
    interval = timeout.total_seconds() / 3 if timeout else 5.0

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


class CallStopped(ApplicationError):
    """Raised by `stoppable`: the run ended, or the worker is stopping (`type` says which)."""


@asynccontextmanager
async def stoppable(
    unwanted: Callable[[], Awaitable[None]] | None = None,
    *,
    shutdown_grace_s: float = 10.0,
) -> AsyncIterator[None]:
    """`heartbeating` for the work of a run's round (a tool call, a search), with a local
    activity's stops raised as the non-retryable errors `RunWorkflow` tells from failures:
    `RUN_NOT_ACTIVE` (the run was cancelled, expired or deleted meanwhile) and `WORKER_STOPPING`
    (the workflow hands its task to another worker, which runs the call again)."""
    try:
        async with heartbeating(unwanted, shutdown_grace_s=shutdown_grace_s):
            yield
    except NoLongerWanted:
        raise CallStopped(
            "the run is no longer in progress", type=RUN_NOT_ACTIVE, non_retryable=True
        ) from None
    except WorkerStopping:
        raise CallStopped(
            "the worker is stopping", type=WORKER_STOPPING, non_retryable=True
        ) from None


@asynccontextmanager
async def _watching(
    unwanted: Callable[[], Awaitable[None]] | None,
    shutdown_grace_s: float,
) -> AsyncIterator[None]:
    body = asyncio.current_task()
    assert body is not None
    stopped: list[Exception] = []  # why the watch stopped the body

    def stop(reason: Exception) -> None:
        if not stopped:
            stopped.append(reason)
            body.cancel()

    async def watch() -> None:
        if unwanted is not None:
            await unwanted()
            stop(NoLongerWanted())

    async def shutdown() -> None:
        await activity.wait_for_worker_shutdown()
        await asyncio.sleep(shutdown_grace_s)
        stop(WorkerStopping())

    tasks = [asyncio.create_task(watch()), asyncio.create_task(shutdown())]
    try:
        yield
    except asyncio.CancelledError:
        if not stopped:
            raise  # the workflow cancelled the activity
        body.uncancel()
        raise stopped[0] from None
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task

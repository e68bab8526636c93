"""Keep a long activity heartbeating while it waits on I/O.

Heartbeats are how Temporal notices a dead worker (the heartbeat timeout fires and the activity is
retried elsewhere) and how a cancellation request reaches a running activity (the SDK delivers it
as `CancelledError` on the next heartbeat's response). A model can be silent for a long time before
its first token, so beating only per chunk is not enough: a background task beats at a third of
the heartbeat timeout.

A local activity cannot heartbeat: it runs inside its workflow's task, and is cancelled by the
workflow, which hears of a cancel signal only at its next workflow task (the SDK heartbeats
that task every few seconds while the activity runs). Such an activity passes a `still_wanted`
check instead (the model call: is the run still `in_progress` in the store?), which is polled
every `WATCH_INTERVAL_S`; when it answers False, the body is cancelled and `NoLongerWanted`
raised. Nor does the SDK cancel a local activity when its worker shuts down: it waits for it,
however long. So the watch also gives the body `shutdown_grace_s` from the start of a
shutdown, then cancels it and raises `WorkerStopping` (the workflow then hands the task to
another worker: workflows/run.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from temporalio import activity

WATCH_INTERVAL_S = 1.0


class NoLongerWanted(Exception):
    """A local activity's `still_wanted` check answered False: its body was stopped."""


class WorkerStopping(Exception):
    """The worker is shutting down and the grace period has passed: the body was stopped."""


@asynccontextmanager
async def heartbeating(
    still_wanted: Callable[[], Awaitable[bool]] | None = None,
    *,
    shutdown_grace_s: float = 10.0,
    watch_interval_s: float = WATCH_INTERVAL_S,
) -> AsyncIterator[None]:
    info = activity.info()
    if info.is_local:
        async with _watching(still_wanted, shutdown_grace_s, watch_interval_s):
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


@asynccontextmanager
async def _watching(
    still_wanted: Callable[[], Awaitable[bool]] | None,
    shutdown_grace_s: float,
    interval_s: float,
) -> AsyncIterator[None]:
    body = asyncio.current_task()
    assert body is not None
    stopped: list[Exception] = []  # why the watch stopped the body

    def stop(reason: Exception) -> None:
        if not stopped:
            stopped.append(reason)
            body.cancel()

    async def watch() -> None:
        while still_wanted is not None:
            await asyncio.sleep(interval_s)
            if not await still_wanted():
                stop(NoLongerWanted())
                return

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

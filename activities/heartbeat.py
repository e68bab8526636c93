"""Keep a long activity heartbeating while it waits on I/O.

Heartbeats are how Temporal notices a dead worker (the heartbeat timeout fires and the activity is
retried elsewhere) and how a cancellation request reaches a running activity (the SDK delivers it
as `CancelledError` on the next heartbeat's response). A model can be silent for a long time before
its first token, so beating only per chunk is not enough: a background task beats at a third of
the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from temporalio import activity


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    timeout = activity.info().heartbeat_timeout
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

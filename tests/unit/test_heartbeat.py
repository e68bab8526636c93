"""`heartbeating` in a local activity (a model round): no heartbeats, but the run's status and the
worker's shutdown are watched, since neither a cancel signal nor the SDK's shutdown reaches a
local activity while it runs (activities/heartbeat.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from temporalio.testing import ActivityEnvironment

from activities.heartbeat import (
    CallStopped,
    NoLongerWanted,
    WorkerStopping,
    heartbeating,
    stoppable,
)
from workflows.shared import RUN_NOT_ACTIVE, WORKER_STOPPING


def _local() -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)
    return env


async def _wanted_forever() -> None:
    await asyncio.Event().wait()


async def test_a_local_body_stops_once_it_is_no_longer_wanted() -> None:
    async def unwanted() -> None:
        await asyncio.sleep(0.1)

    async def body() -> str:
        async with heartbeating(unwanted):
            await asyncio.sleep(30)
        return "finished"

    started = time.monotonic()
    with pytest.raises(NoLongerWanted):
        await _local().run(body)
    assert time.monotonic() - started < 5


async def test_a_local_body_that_is_still_wanted_finishes() -> None:
    async def body() -> str:
        async with heartbeating(_wanted_forever):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)  # no cancellation is left pending after the watch
        return "finished"

    assert await _local().run(body) == "finished"


async def test_a_shutdown_gives_a_local_body_the_grace_period_then_stops_it() -> None:
    async def body(seconds: float) -> str:
        async with heartbeating(_wanted_forever, shutdown_grace_s=0.3):
            await asyncio.sleep(seconds)
        return "finished"

    quick = _local()
    task = asyncio.create_task(quick.run(body, 0.1))
    await asyncio.sleep(0.02)
    quick.worker_shutdown()
    assert await task == "finished"  # done within the grace period

    slow = _local()
    task = asyncio.create_task(slow.run(body, 30))
    await asyncio.sleep(0.02)
    stopping = time.monotonic()
    slow.worker_shutdown()
    with pytest.raises(WorkerStopping):
        await task
    assert 0.25 < time.monotonic() - stopping < 5


async def test_a_cancellation_from_the_workflow_stays_a_cancellation() -> None:
    async def body() -> str:
        async with heartbeating(_wanted_forever):
            await asyncio.sleep(30)
        return "finished"

    env = _local()
    task = asyncio.create_task(env.run(body))
    await asyncio.sleep(0.05)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stopped_call_is_reported_as_the_stop_the_workflow_handles() -> None:
    """`stoppable` (a search, a `local=True` tool): the run ended → RUN_NOT_ACTIVE, the worker
    stops → WORKER_STOPPING, both non-retryable; anything else the body raises passes as is."""

    async def unwanted() -> None:
        await asyncio.sleep(0.05)

    async def ended() -> str:
        async with stoppable(unwanted):
            await asyncio.sleep(30)
        return "finished"

    with pytest.raises(CallStopped) as stopped:
        await _local().run(ended)
    assert stopped.value.type == RUN_NOT_ACTIVE and stopped.value.non_retryable

    async def long_call() -> str:
        async with stoppable(_wanted_forever, shutdown_grace_s=0.1):
            await asyncio.sleep(30)
        return "finished"

    env = _local()
    task = asyncio.create_task(env.run(long_call))
    await asyncio.sleep(0.02)
    env.worker_shutdown()
    with pytest.raises(CallStopped) as stopping:
        await task
    assert stopping.value.type == WORKER_STOPPING and stopping.value.non_retryable

    async def failing() -> str:
        async with stoppable(_wanted_forever):
            raise ConnectionError("the backend is down")
        return "finished"

    with pytest.raises(ConnectionError):
        await _local().run(failing)

"""The Temporal floor: what the smallest durable run costs on this machine, with no store, no HTTP
and no model — the part of a run's latency that only a faster Temporal could remove.

A workflow that starts one activity and returns its result, against the same Temporal dev server
`dev` runs (SQLite file, WAL), with a worker in the same process: eager workflow start (the first
workflow task comes back in the start response) and eager activity execution, as `dev` uses them.
Measured per workflow: start call → activity running (the floor under time to first token) and
start call → result (the floor under time to `completed`), plus the Temporal server's CPU per
workflow.

The floor a run's first token actually rides on: the same with the activity as a local activity
(as model rounds are), split at the start call's return: the start RPC (the server creates the
workflow and hands its first task back), then the SDK's own path to the local activity (the
activation, the workflow code on the SDK's thread, its completion, the activity's dispatch).

Then the floor under a tool round: a workflow whose two activities run one after the other, so
that the workflow task between them is not handed back eagerly and goes through the history
shard's transfer queue. It is measured against two servers, the one `dev` runs and one with
Temporal's default transfer-queue read rate (`history.transferProcessorMaxPollRPS` = 20, the
baseline), with the workflow-task dispatch (scheduled → started) read off the histories.

    .venv/bin/python -m bench.temporal_floor [--runs 200] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from assistants.devserver import TRANSFER_POLL_RPS, TemporalDevServer
from bench.harness import cpu_seconds, summary, write_result

_started: dict[str, float] = {}
TEMPORAL_DEFAULT_TRANSFER_POLL_RPS = 20
QUEUE = "floor"


@activity.defn
async def touch(key: str) -> str:
    _started[key] = time.perf_counter()
    return key


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, key: str) -> str:
        result: str = await workflow.execute_activity(
            touch, key, start_to_close_timeout=timedelta(seconds=10)
        )
        return result


@workflow.defn
class LocalFloorWorkflow:
    """One local activity, as a run's model round."""

    @workflow.run
    async def run(self, key: str) -> str:
        result: str = await workflow.execute_local_activity(
            touch, key, start_to_close_timeout=timedelta(seconds=10)
        )
        return result


@workflow.defn
class TwoStepWorkflow:
    """An activity, then another: the workflow task between them waits in the transfer queue."""

    @workflow.run
    async def run(self, key: str) -> str:
        await workflow.execute_activity(touch, key, start_to_close_timeout=timedelta(seconds=10))
        result: str = await workflow.execute_activity(
            touch, key, start_to_close_timeout=timedelta(seconds=10)
        )
        return result


async def _dispatch_s(client: Client, workflow_id: str) -> list[float]:
    """Scheduled → started (seconds) of each workflow task not handed back in a response."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, Any] = {}
    out: list[float] = []
    for event in history.events:
        at = event.event_time.ToDatetime()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[event.event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            began = scheduled[event.workflow_task_started_event_attributes.scheduled_event_id]
            if event.event_id > 3:  # the first one came back eagerly in the start response
                out.append((at - began).total_seconds())
    return out


@contextlib.asynccontextmanager
async def _floor_stack(
    workflow_class: type, transfer_poll_rps: int = TRANSFER_POLL_RPS
) -> AsyncIterator[tuple[TemporalDevServer, Client]]:
    """A fresh dev server (SQLite file, as `dev` runs it) and a worker in this process on
    `QUEUE` for `workflow_class` and `touch`."""
    with tempfile.TemporaryDirectory() as tmp:
        server = TemporalDevServer(
            db_file=Path(tmp) / "temporal.db", transfer_poll_rps=transfer_poll_rps
        ).start()
        try:
            client = await Client.connect(server.address)
            async with Worker(
                client,
                task_queue=QUEUE,
                workflows=[workflow_class],
                activities=[touch],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                yield server, client
        finally:
            server.stop()


async def _two_steps(transfer_poll_rps: int, runs: int) -> dict[str, Any]:
    totals: list[float] = []
    dispatch: list[float] = []
    async with _floor_stack(TwoStepWorkflow, transfer_poll_rps) as (_, client):
        for index in range(runs + 10):
            key = uuid.uuid4().hex
            begun = time.perf_counter()
            handle = await client.start_workflow(
                TwoStepWorkflow.run, key, id=key, task_queue=QUEUE, request_eager_start=True
            )
            await handle.result()
            _started.pop(key, None)
            if index >= 10:  # warm-up
                totals.append(time.perf_counter() - begun)
                dispatch += await _dispatch_s(client, key)
    return {
        "history.transferProcessorMaxPollRPS": transfer_poll_rps,
        "start_to_result_ms": summary(totals),
        "workflow_task_dispatch_ms": summary(dispatch),
    }


async def _one(client: Client) -> tuple[float, float]:
    key = uuid.uuid4().hex
    begun = time.perf_counter()
    handle = await client.start_workflow(
        FloorWorkflow.run, key, id=key, task_queue=QUEUE, request_eager_start=True
    )
    await handle.result()
    done = time.perf_counter()
    return _started.pop(key) - begun, done - begun


async def _local(runs: int) -> dict[str, Any]:
    """Start call → local activity running, and the start RPC's share of it."""
    rpc: list[float] = []
    total: list[float] = []
    async with _floor_stack(LocalFloorWorkflow) as (_, client):
        for index in range(runs + 10):
            key = uuid.uuid4().hex
            begun = time.perf_counter()
            handle = await client.start_workflow(
                LocalFloorWorkflow.run, key, id=key, task_queue=QUEUE, request_eager_start=True
            )
            returned = time.perf_counter()
            await handle.result()
            if index >= 10:  # warm-up
                rpc.append(returned - begun)
                total.append(_started.pop(key) - begun)
            _started.pop(key, None)
    after_rpc = [t - r for t, r in zip(total, rpc, strict=True)]
    return {
        "start_to_local_activity_ms": summary(total),
        "start_rpc_ms": summary(rpc),
        "start_return_to_local_activity_ms": summary(after_rpc),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with _floor_stack(FloorWorkflow) as (server, client):
        for _ in range(10):  # warm-up
            await _one(client)
        sequential = [await _one(client) for _ in range(args.runs)]
        assert server.pid is not None
        cpu_before = cpu_seconds(server.pid)
        limit = asyncio.Semaphore(args.concurrency)

        async def limited() -> tuple[float, float]:
            async with limit:
                return await _one(client)

        began = time.perf_counter()
        await asyncio.gather(*(limited() for _ in range(args.runs)))
        wall = time.perf_counter() - began
        server_cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / args.runs
    local = await _local(args.runs)
    two_steps = [
        await _two_steps(TEMPORAL_DEFAULT_TRANSFER_POLL_RPS, args.runs // 2),
        await _two_steps(TRANSFER_POLL_RPS, args.runs // 2),
    ]
    return {
        "runs": args.runs,
        "two_activities_in_sequence": two_steps,
        "start_to_activity_ms": summary([s for s, _ in sequential]),
        "start_to_result_ms": summary([d for _, d in sequential]),
        "local_activity": local,
        "concurrent": {
            "concurrency": args.concurrency,
            "workflows_per_s": round(args.runs / wall, 1),
            "temporal_server_cpu_ms_per_workflow": round(server_cpu_ms, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    results = asyncio.run(main_async(parser.parse_args()))
    write_result("temporal_floor.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

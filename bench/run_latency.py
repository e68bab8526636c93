"""Run latency and throughput, against a baseline measured in the same run.

Starts `durable-assistants dev` (embedded Temporal dev server, worker and API, SQLite store) in a
fresh data dir and a scripted model server that answers instantly, each as its own process. Then:

1. baseline: the same streamed chat completion called directly on the model server;
2. latency: `runs.create` → `completed` as a client observes it, sequentially, both with the SDK's
   `create_and_poll` (it waits `openai-poll-after-ms` between GETs) and with a client polling every
   5 ms (which shows the server-side latency);
3. where the time goes, from the Temporal histories of sampled runs;
4. throughput: completed runs per second with 50 concurrent clients.

    .venv/bin/python -m bench.run_latency [--runs 100] [--clients 50] [--per-client 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.harness import RESULTS, DevProcesses, pct, summary


async def baseline(model_url: str, n: int) -> list[float]:
    direct = openai.AsyncOpenAI(base_url=model_url, api_key="x", max_retries=0)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        stream = await direct.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Tell me about penguins."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _chunk in stream:
            pass
        times.append(time.perf_counter() - started)
    await direct.close()
    return times


async def one_run(
    client: openai.AsyncOpenAI, assistant_id: str, *, poll_ms: int | None
) -> tuple[float, str]:
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "Tell me about penguins."}]
    )
    started = time.perf_counter()
    if poll_ms is None:
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant_id
        )
    else:
        run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id)
        while run.status in ("queued", "in_progress"):
            await asyncio.sleep(poll_ms / 1000)
            run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    elapsed = time.perf_counter() - started
    assert run.status == "completed", run
    return elapsed, run.id


async def breakdown(temporal: str, run_ids: list[str]) -> dict[str, float]:
    """Mean durations (ms) read off the Temporal histories."""
    client = await Client.connect(temporal)
    parts: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds * 1000)

    for run_id in run_ids:
        history = await client.get_workflow_handle(run_id).fetch_history()
        events = history.events
        start = events[0].event_time.ToDatetime()
        end = events[-1].event_time.ToDatetime()
        add("workflow: start → completed", (end - start).total_seconds())
        scheduled: dict[int, Any] = {}
        names: dict[int, str] = {}
        for event in events:
            t = event.event_time.ToDatetime()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                scheduled[event.event_id] = t
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                sched = scheduled[event.workflow_task_started_event_attributes.scheduled_event_id]
                add("workflow task: schedule → start (dispatch)", (t - sched).total_seconds())
                scheduled[event.event_id] = t
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                began = scheduled[event.workflow_task_completed_event_attributes.started_event_id]
                add(
                    "workflow task: start → completed (incl. local activities)",
                    (t - began).total_seconds(),
                )
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = t
                names[event.event_id] = (
                    event.activity_task_scheduled_event_attributes.activity_type.name
                )
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = event.activity_task_started_event_attributes.scheduled_event_id
                add("activity: schedule → start (dispatch)", (t - scheduled[sid]).total_seconds())
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = event.activity_task_completed_event_attributes.scheduled_event_id
                add(
                    f"activity {names[sid]}: schedule → completed",
                    (t - scheduled[sid]).total_seconds(),
                )
    means = {name: round(statistics.mean(values), 1) for name, values in parts.items()}
    means["workflow tasks per run"] = round(
        len(parts["workflow task: schedule → start (dispatch)"]) / len(run_ids), 1
    )
    return means


async def throughput(
    client: openai.AsyncOpenAI, assistant_id: str, clients: int, per_client: int
) -> dict[str, float]:
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_client):
            elapsed, _ = await one_run(client, assistant_id, poll_ms=None)
            latencies.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "runs": len(latencies),
        "wall_s": round(wall, 1),
        "runs_per_s": round(len(latencies) / wall, 1),
        **summary(latencies),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        procs = DevProcesses(Path(tmp))
        procs.start()
        try:
            client = openai.AsyncOpenAI(
                base_url=procs.api_url,
                api_key=procs.key,
                max_retries=0,  # an error must show, not be hidden by a retry
            )
            assistant = await client.beta.assistants.create(model="gpt-4o")
            for _ in range(5):  # warm up connections, caches and the worker
                await one_run(client, assistant.id, poll_ms=5)
            base = await baseline(procs.model_url, args.runs)
            tight: list[float] = []
            run_ids: list[str] = []
            for _ in range(args.runs):
                elapsed, run_id = await one_run(client, assistant.id, poll_ms=5)
                tight.append(elapsed)
                run_ids.append(run_id)
            sdk = [(await one_run(client, assistant.id, poll_ms=None))[0] for _ in range(args.runs)]
            parts = await breakdown(procs.temporal_address, run_ids[:20])
            load = await throughput(client, assistant.id, args.clients, args.per_client)
            base_p50 = pct(base, 0.5)
            return {
                "baseline_direct_model_call": summary(base),
                "run_polled_every_5ms": summary(tight),
                "run_sdk_create_and_poll": summary(sdk),
                "added_p50_ms_polled_5ms": round((pct(tight, 0.5) - base_p50) * 1000, 1),
                "added_p50_ms_sdk": round((pct(sdk, 0.5) - base_p50) * 1000, 1),
                "where_time_goes_ms": parts,
                "throughput": load,
            }
        finally:
            procs.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

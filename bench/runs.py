"""Runs as a client drives them, for the benchmarks: polled, streamed, with a client-side function
tool round; the baseline (the same chat completion called directly on the model server); and what
a run costs inside Temporal, read off its history.

Every driver returns client-observed durations in seconds (`time.perf_counter`), measured from
just before `runs.create` (the thread already exists).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import openai
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

PROMPT = "Tell me about penguins."
# A client-side function tool: the worker does not register it, so the run stops in
# `requires_action` and the client submits the output (the usual OpenAI function calling).
CLIENT_FUNCTION: Any = {
    "type": "function",
    "function": {
        "name": "lookup_city",
        "description": "Facts about a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# A function tool the worker registers and runs (`ASSISTANTS_TOOL_MODULES=tests.support.tools`).
SERVER_FUNCTION: Any = {"type": "function", "function": {"name": "get_weather"}}


async def direct_completion(client: openai.AsyncOpenAI) -> tuple[float, float]:
    """The baseline: the streamed chat completion the worker makes, called directly on the
    model server. Returns (first content token, last chunk)."""
    started = time.perf_counter()
    first = 0.0
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


async def new_thread(client: openai.AsyncOpenAI) -> str:
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": PROMPT}])
    return thread.id


async def polled_run(
    client: openai.AsyncOpenAI,
    assistant_id: str,
    *,
    poll_ms: int | None,
    thread_id: str | None = None,
) -> tuple[float, str]:
    """`runs.create` → `completed`: polling every `poll_ms`, or the SDK's `create_and_poll`
    (which waits the server's `openai-poll-after-ms` between GETs) when None.
    Returns (duration, run id)."""
    thread_id = thread_id or await new_thread(client)
    started = time.perf_counter()
    if poll_ms is None:
        run = await client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant_id
        )
    else:
        run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
        while run.status in ("queued", "in_progress"):
            await asyncio.sleep(poll_ms / 1000)
            run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    elapsed = time.perf_counter() - started
    assert run.status == "completed", (run.status, run.last_error)
    return elapsed, run.id


@dataclass
class Streamed:
    first_delta: float  # the first `thread.message.delta`
    completed: float  # the `thread.run.completed` event's arrival
    done: float  # the stream's end (`done`)
    run_id: str


async def streamed_run(
    client: openai.AsyncOpenAI, assistant_id: str, *, thread_id: str | None = None
) -> Streamed:
    thread_id = thread_id or await new_thread(client)
    started = time.perf_counter()
    first = completed = 0.0
    run_id = ""
    stream = await client.beta.threads.runs.create(
        thread_id=thread_id, assistant_id=assistant_id, stream=True
    )
    final = ""
    async for event in stream:
        if event.event == "thread.run.created":
            run_id = event.data.id
        elif event.event == "thread.message.delta" and not first:
            first = time.perf_counter() - started
        elif event.event == "thread.run.completed":
            completed = time.perf_counter() - started
        final = event.event
    assert final == "thread.run.completed", final
    return Streamed(first, completed, time.perf_counter() - started, run_id)


async def function_round_run(
    client: openai.AsyncOpenAI, assistant_id: str, *, poll_ms: int = 5
) -> tuple[float, str]:
    """A run with one client-side function tool round: `requires_action`, `submit_tool_outputs`,
    then `completed`, polled every `poll_ms`."""
    thread_id = await new_thread(client)
    started = time.perf_counter()
    run = await client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    submitted = False
    while run.status in ("queued", "in_progress", "requires_action"):
        if run.status == "requires_action" and not submitted:
            assert run.required_action is not None
            outputs: Any = [
                {"tool_call_id": call.id, "output": json.dumps({"population": 2_100_000})}
                for call in run.required_action.submit_tool_outputs.tool_calls
            ]
            run = await client.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=thread_id, tool_outputs=outputs
            )
            submitted = True
            continue
        await asyncio.sleep(poll_ms / 1000)
        run = await client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    elapsed = time.perf_counter() - started
    assert run.status == "completed" and submitted, (run.status, run.last_error)
    return elapsed, run.id


_COUNTED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow tasks",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
}


async def breakdown(temporal: str, run_ids: list[str]) -> dict[str, float]:
    """Where the time goes (mean durations in ms) and what each run costs Temporal (mean counts
    per run: history events, workflow tasks, activities, local activities), from the Temporal
    histories of the given runs (workflow id = run id)."""
    client = await Client.connect(temporal)
    parts: dict[str, list[float]] = {}
    counts: Counter[str] = Counter()

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds * 1000)

    for run_id in run_ids:
        history = await client.get_workflow_handle(run_id).fetch_history()
        events = history.events
        counts["history events"] += len(events)
        start = events[0].event_time.ToDatetime()
        end = events[-1].event_time.ToDatetime()
        add("workflow: start → completed", (end - start).total_seconds())
        scheduled: dict[int, Any] = {}
        names: dict[int, str] = {}
        for event in events:
            if event.event_type in _COUNTED:
                counts[_COUNTED[event.event_type]] += 1
            t = event.event_time.ToDatetime()
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                # Local activities leave only a marker in the history (the SDK's own name).
                if event.marker_recorded_event_attributes.marker_name == "core_local_activity":
                    counts["local activities"] += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
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
    for name in ("history events", *_COUNTED.values(), "local activities"):
        means[f"{name} per run"] = round(counts[name] / len(run_ids), 1)
    return means

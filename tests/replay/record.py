"""Record the replay histories: `.venv/bin/python -m tests.replay.record [scenario ...]`.

Starts the real system — a Temporal dev server, the scripted model, and `api` + `worker`
subprocesses on SQLite in a temporary directory (`tests.support.stack.Stack`, which registers the
tools of `tests/support/tools.py`) — drives each scenario with the real `openai` SDK, waits for the
run's workflow (workflow id = run id) to close, and writes its history to
`tests/replay/histories/<scenario>.json`, overwriting the previous recording. With no arguments
it records every scenario in `tests.replay.SCENARIOS`.

Re-record only for a deliberate change that in-flight runs can survive (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai.types.beta import AssistantToolParam, FunctionToolParam
from openai.types.beta.threads import Run
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput
from temporalio.client import Client, WorkflowHistory

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from assistants.trigger import MessageInput, RunRequest, start_run
from tests.replay import DELIVERY_HISTORIES_DIR, HISTORIES_DIR, SCENARIOS
from tests.support.stack import Stack
from tests.support.webhook_receiver import WebhookReceiver, delivery_ids, subscribed

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}
EXPIRES_AFTER_S = 3
POLL_MS = 50

CLIENT_TOOL: FunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_temperature",
        "description": "Current temperature of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SLOW_ANSWER = "Penguins are flightless birds of the Southern Hemisphere. " * 4


@dataclass
class Recording:
    temporal: Client
    model: ScriptedModel
    stack: Stack
    expiring: Stack | None  # runs expire after EXPIRES_AFTER_S (only started when needed)


# --- helpers -------------------------------------------------------------------------------------


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _wait_status(client: openai.OpenAI, run: Run, statuses: set[str], timeout: float = 30.0) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        current = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
        if current.status in statuses:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run.id} stayed {current.status}, wanted {statuses}")
        time.sleep(0.05)


def _expect(run: Run, status: str) -> Run:
    if run.status != status:
        raise RuntimeError(f"run {run.id} is {run.status}, expected {status}: {run.last_error}")
    return run


def _start(
    client: openai.OpenAI, tools: list[AssistantToolParam] | None = None, text: str = "Hi"
) -> tuple[str, str]:
    """A new assistant and thread: (assistant id, thread id)."""
    assistant = client.beta.assistants.create(
        model="gpt-4o", instructions="You are a test assistant.", tools=tools or []
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    return assistant.id, thread.id


def _outputs(run: Run, output: str) -> list[ToolOutput]:
    assert run.required_action is not None, f"run {run.id} requires no action"
    return [
        {"tool_call_id": call.id, "output": output}
        for call in run.required_action.submit_tool_outputs.tool_calls
    ]


def _by_name(*names: str) -> list[AssistantToolParam]:
    """Tools registered with the worker, declared by name only."""
    return [{"type": "function", "function": {"name": name}} for name in names]


def _asks_for_temperature() -> Reply:
    return Reply(tool_calls=[ToolCallSpec("get_temperature", '{"city": "Paris"}')])


# --- scenarios: each drives one run and returns its id (= its workflow id) ----------------------


def plain(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client)
    r.model.enqueue(Reply(text="Hello from the replay recorder."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def streamed(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client)
    r.model.enqueue(Reply(text="A streamed answer, four characters per chunk."))
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        stream.until_done()
        run = stream.get_final_run()
    return _expect(run, "completed").id


def tool_round_trip(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, [CLIENT_TOOL], "Weather in Paris?")
    r.model.enqueue(_asks_for_temperature(), Reply(text="It is 22 degrees in Paris."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    _expect(run, "requires_action")
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(run, "22C"), poll_interval_ms=50
    )
    return _expect(done, "completed").id


def tool_round_trip_streamed(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, [CLIENT_TOOL], "Weather in Paris?")
    r.model.enqueue(_asks_for_temperature(), Reply(text="It is 22 degrees in Paris."))
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        stream.until_done()
        run = _expect(stream.get_final_run(), "requires_action")
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread_id, tool_outputs=_outputs(run, "22C")
    ) as stream:
        stream.until_done()
        done = stream.get_final_run()
    return _expect(done, "completed").id


def registered_tools(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, _by_name("get_weather", "flaky_lookup"), "Go")
    key = uuid.uuid4().hex[:8]  # flaky_lookup fails twice per key (per worker process)
    r.model.enqueue(
        Reply(
            tool_calls=[
                ToolCallSpec("get_weather", '{"city": "Paris"}'),
                ToolCallSpec("flaky_lookup", json.dumps({"key": key})),
            ]
        ),
        Reply(text="21 degrees in Paris, and the lookup worked."),
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def local_tools(r: Recording) -> str:
    """`local_weather` and `local_flaky_lookup` (retried twice) as local activities, and
    `get_weather` as a regular one, in one round."""
    client = r.stack.client()
    tools = _by_name("local_weather", "local_flaky_lookup", "get_weather")
    assistant_id, thread_id = _start(client, tools, "Go")
    key = uuid.uuid4().hex[:8]
    r.model.enqueue(
        Reply(
            tool_calls=[
                ToolCallSpec("local_weather", '{"city": "Oslo"}'),
                ToolCallSpec("local_flaky_lookup", json.dumps({"key": key})),
                ToolCallSpec("get_weather", '{"city": "Paris"}'),
            ]
        ),
        Reply(text="Oslo and Paris, and the lookup worked."),
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def registered_tool_error(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, _by_name("always_fails"), "Go")
    r.model.enqueue(
        Reply(tool_calls=[ToolCallSpec("always_fails", '{"reason": "maintenance"}')]),
        Reply(text="Sorry, the backend is down."),
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def cancelled(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, text="Talk slowly")
    r.model.enqueue(Reply(text="word " * 200, tokens_per_second=10))
    run = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    _wait(lambda: r.model.in_flight == 1, "the model call")
    _wait_status(client, run, {"in_progress"})
    time.sleep(0.5)  # let some text stream
    client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    final = client.beta.threads.runs.poll(run.id, thread_id=thread_id, poll_interval_ms=POLL_MS)
    return _expect(final, "cancelled").id


def cancelled_in_requires_action(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, [CLIENT_TOOL], "Weather in Paris?")
    r.model.enqueue(_asks_for_temperature())
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    _expect(run, "requires_action")
    client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
    final = client.beta.threads.runs.poll(run.id, thread_id=thread_id, poll_interval_ms=POLL_MS)
    return _expect(final, "cancelled").id


def expired(r: Recording) -> str:
    assert r.expiring is not None
    client = r.expiring.client()
    assistant_id, thread_id = _start(client, [CLIENT_TOOL], "Weather in Paris?")
    r.model.enqueue(_asks_for_temperature())
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    _expect(run, "requires_action")
    return _expect(_wait_status(client, run, TERMINAL, EXPIRES_AFTER_S + 30), "expired").id


def failed(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client)
    r.model.enqueue(Reply(status=400, error_message="scripted bad request"))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "failed").id


def crash_recovered(r: Recording) -> str:
    client = r.stack.client()
    assistant_id, thread_id = _start(client, text="Penguins?")
    slow = Reply(text=SLOW_ANSWER, tokens_per_second=20)
    r.model.enqueue(slow, slow)  # the retried model call streams the answer again
    run = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    r.model.wait_for_requests(1)
    _wait_status(client, run, {"in_progress"})
    time.sleep(1.0)  # mid-stream
    r.stack.kill_workers()
    r.stack.start_worker()
    return _expect(_wait_status(client, run, TERMINAL, 90), "completed").id


async def child_workflow(r: Recording) -> str:
    """A run started through Temporal (`assistants.trigger.start_run`), as a service would."""
    client = r.stack.client()
    assistant = await asyncio.to_thread(client.beta.assistants.create, model="gpt-4o")
    r.model.enqueue(Reply(text="Hello, service."))
    request = RunRequest(
        project_id="default", assistant_id=assistant.id, messages=[MessageInput("user", "hi")]
    )
    handle = await start_run(r.temporal, request, task_queue=r.stack.task_queue)
    result = await asyncio.wait_for(handle.result(), 60)
    if result.status != "completed":
        raise RuntimeError(f"run {handle.id} is {result.status}: {result.error_message}")
    return handle.id


def code_interpreter(r: Recording) -> str:
    """Two code_interpreter rounds in the thread's sandbox session (claim + execute each)."""
    client = r.stack.client()
    assistant_id, thread_id = _start(client, [{"type": "code_interpreter"}])
    r.model.enqueue(
        Reply(tool_calls=[ToolCallSpec("python", json.dumps({"code": "x = 6 * 7"}))]),
        Reply(tool_calls=[ToolCallSpec("python", json.dumps({"code": "print(x)"}))]),
        Reply(text="42."),
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def file_search(r: Recording) -> str:
    """A thread store made from a message attachment, the run waiting for its ingestion (timers),
    one file_search round (the search activity) and a cited answer."""
    client = r.stack.client()
    file_id = client.files.create(
        file=("penguins.txt", b"Emperor penguins breed in the Antarctic winter."),
        purpose="assistants",
    ).id
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "When do emperor penguins breed?",
                "attachments": [{"file_id": file_id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    r.model.enqueue(
        Reply(tool_calls=[ToolCallSpec("file_search", json.dumps({"queries": ["breeding"]}))]),
        Reply(text="In the Antarctic winter【0:0†source】."),
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=POLL_MS
    )
    return _expect(run, "completed").id


def webhooks(r: Recording) -> str:
    """A run whose end a webhook is subscribed to: the run, then its delivery."""
    client = r.stack.client()
    with (
        WebhookReceiver() as receiver,
        subscribed(r.stack, receiver.url, ["thread.run.completed"]),
    ):
        assistant_id, thread_id = _start(client)
        r.model.enqueue(Reply(text="Delivered."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant_id, poll_interval_ms=POLL_MS
        )
        receiver.wait(1)
    return _expect(run, "completed").id


Scenario = Callable[[Recording], Awaitable[str]]


def _threaded(fn: Callable[[Recording], str]) -> Scenario:
    """The blocking SDK scenarios run in a thread, off the Temporal client's event loop."""

    async def scenario(r: Recording) -> str:
        return await asyncio.to_thread(fn, r)

    return scenario


RECORDERS: dict[str, Scenario] = {
    "plain": _threaded(plain),
    "streamed": _threaded(streamed),
    "tool_round_trip": _threaded(tool_round_trip),
    "tool_round_trip_streamed": _threaded(tool_round_trip_streamed),
    "registered_tools": _threaded(registered_tools),
    "registered_tool_error": _threaded(registered_tool_error),
    "cancelled": _threaded(cancelled),
    "cancelled_in_requires_action": _threaded(cancelled_in_requires_action),
    "expired": _threaded(expired),
    "failed": _threaded(failed),
    "crash_recovered": _threaded(crash_recovered),
    "child_workflow": child_workflow,
    "code_interpreter": _threaded(code_interpreter),
    "file_search": _threaded(file_search),
    "webhooks": _threaded(webhooks),
    "local_tools": _threaded(local_tools),
}
assert tuple(RECORDERS) == SCENARIOS, "tests.replay.SCENARIOS and RECORDERS disagree"


# --- driver --------------------------------------------------------------------------------------


async def _record_one(r: Recording, name: str) -> None:
    started = time.monotonic()
    r.model.reset()
    run_id = await RECORDERS[name](r)
    handle = r.temporal.get_workflow_handle(run_id)
    result: Any = await asyncio.wait_for(handle.result(), 120)  # the workflow is closed
    history = await handle.fetch_history()
    path = HISTORIES_DIR / f"{name}.json"
    text = history.to_json() + "\n"
    path.write_text(text, encoding="utf-8")
    await _record_deliveries(r, history, name)
    status = result.get("status") if isinstance(result, dict) else result
    print(
        f"{name:<29} {status!s:<10} {len(history.events):>3} events "
        f"{len(text) / 1024:6.1f} KiB {time.monotonic() - started:5.1f} s  {run_id}",
        flush=True,
    )


async def _record_deliveries(r: Recording, history: WorkflowHistory, name: str) -> None:
    """The histories of the webhook deliveries the run started (`WebhookDeliveryWorkflow`,
    child workflows it did not wait for), as `histories/deliveries/<scenario>.json`."""
    for index, child_id in enumerate(delivery_ids(history)):
        child = r.temporal.get_workflow_handle(child_id)
        await asyncio.wait_for(child.result(), 120)
        suffix = f"_{index}" if index else ""
        path = DELIVERY_HISTORIES_DIR / f"{name}{suffix}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((await child.fetch_history()).to_json() + "\n", encoding="utf-8")


async def _record(r: Recording, names: list[str]) -> None:
    for name in names:
        await _record_one(r, name)


async def _connect(address: str) -> Client:
    return await Client.connect(address)


@contextmanager
def _stack(stack: Stack) -> Iterator[Stack]:
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def record(names: list[str], workdir: Path) -> None:
    with ExitStack() as cleanup:
        temporal = cleanup.enter_context(
            TemporalDevServer(db_file=workdir / "temporal.db", log_file=workdir / "temporal.log")
        )
        model = cleanup.enter_context(ScriptedModel())

        def new_stack(name: str, overrides: dict[str, str] | None = None) -> Stack:
            return Stack(
                name=name,
                database_url=f"sqlite:///{workdir / name / 'assistants.db'}",
                temporal_address=temporal.address,
                model_base_url=model.base_url,
                workdir=workdir / name,
                overrides=overrides,
            )

        stack = cleanup.enter_context(_stack(new_stack("replay")))
        expiring = None
        if "expired" in names:
            overrides = {"ASSISTANTS_RUN_EXPIRES_AFTER_S": str(EXPIRES_AFTER_S)}
            expiring = cleanup.enter_context(_stack(new_stack("replay-expiry", overrides)))

        async def main() -> None:
            client = await _connect(temporal.address)
            await _record(Recording(client, model, stack, expiring), names)

        asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.replay.record", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    names: list[str] = parser.parse_args(argv).scenarios or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    HISTORIES_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="replay-record-"))
    started = time.monotonic()
    try:
        record(names, workdir)
    except BaseException:
        print(f"recording failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"recorded {len(names)} histories in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()

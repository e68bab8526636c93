"""Function tools registered with the worker (`tests/support/tools.py`) and executed by it as
activities: no `requires_action`, retries, errors handed to the model or failing the run,
heartbeats, and a worker killed while a tool runs. Each behaviour is checked for the tools
registered with `local=True` too (local activities: no round trip to the Temporal server)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack, wait_for_status
from tests.support.stack import Stack


def _by_name(*names: str) -> list[Any]:
    """Registered tools declared by name only: the worker supplies schema and description."""
    return [{"type": "function", "function": {"name": name}} for name in names]


def _ask(client: openai.OpenAI, tools: list[Any]) -> tuple[Any, Any]:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=tools)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Go"}])
    return assistant, thread


def _tool_outputs(client: openai.OpenAI, thread_id: str, run_id: str) -> list[str | None]:
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc").data
    details = steps[0].step_details
    assert steps[0].type == "tool_calls" and details.type == "tool_calls"
    return [c.function.output for c in details.tool_calls]  # type: ignore[union-attr]


async def _history(address: str, run_id: str) -> list[HistoryEvent]:
    client = await Client.connect(address)
    return list((await client.get_workflow_handle(run_id).fetch_history()).events)


@pytest.mark.parametrize("tool", ["get_weather", "local_weather"])
def test_a_registered_tool_runs_in_the_worker(
    stack: Stack, model: ScriptedModel, tool: str
) -> None:
    client = stack.client()
    assistant, thread = _ask(client, _by_name(tool))
    model.reset()
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec(tool, '{"city": "Paris"}')]),
        Reply(text="21 degrees in Paris."),
    )
    events: list[str] = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            events.append(event.event)
        run = stream.get_final_run()
    assert run.status == "completed"
    assert "thread.run.requires_action" not in events
    assert events.count("thread.run.in_progress") == 1  # the run never left in_progress

    # The model got the registry's schema for a tool declared by name only.
    (sent,) = model.requests[0]["tools"]
    assert sent["function"]["description"] == "Current weather for a city."
    assert sent["function"]["parameters"]["required"] == ["city"]
    assert sent["function"]["parameters"]["properties"]["city"]["description"] == (
        "The city, e.g. Paris."
    )
    expected = {"city": "Paris", "temperature": 21, "unit": "celsius"}
    (output,) = _tool_outputs(client, thread.id, run.id)
    assert output is not None and json.loads(output) == expected
    tool_turn = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert json.loads(tool_turn["content"]) == expected
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)

    history = asyncio.run(_history(stack.temporal_address, run.id))
    kinds = [e.event_type for e in history]
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    if tool == "local_weather":
        # The model rounds, the call and the step's completion ran in the first workflow task,
        # each a local activity (a marker): no round trip to the server in between.
        assert scheduled == []
        assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
        assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) >= 4
    else:
        assert scheduled == ["run_tool"]


@pytest.mark.parametrize("tool", ["flaky_lookup", "local_flaky_lookup"])
def test_a_flaky_tool_is_retried(stack: Stack, model: ScriptedModel, tool: str) -> None:
    client = stack.client()
    assistant, thread = _ask(client, _by_name(tool))
    key = uuid.uuid4().hex[:8]
    model.reset()
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec(tool, json.dumps({"key": key}))]),
        Reply(text="Found it."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert _tool_outputs(client, thread.id, run.id) == [f"value-of-{key} after 3 attempts"]


@pytest.mark.parametrize(
    ("tool", "arguments", "error"),
    [
        ("always_fails", '{"reason": "maintenance"}', "RuntimeError: backend down: maintenance"),
        ("find_order", '{"order_id": "A7"}', "no order with id A7"),
        ("get_weather", '{"town": "Paris"}', "Invalid arguments for get_weather"),
        (
            "local_always_fails",
            '{"reason": "maintenance"}',
            "RuntimeError: backend down: maintenance",
        ),
        ("local_weather", '{"town": "Paris"}', "Invalid arguments for local_weather"),
    ],
    ids=[
        "retries-exhausted",
        "tool-error",
        "bad-arguments",
        "local-retries-exhausted",
        "local-bad-arguments",
    ],
)
def test_a_failing_tool_hands_its_error_to_the_model(
    stack: Stack, model: ScriptedModel, tool: str, arguments: str, error: str
) -> None:
    client = stack.client()
    assistant, thread = _ask(client, _by_name(tool))
    model.reset()
    model.enqueue(Reply(tool_calls=[ToolCallSpec(tool, arguments)]), Reply(text="Sorry."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    (output,) = _tool_outputs(client, thread.id, run.id)
    assert output is not None and error in json.loads(output)["error"]
    tool_turn = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert tool_turn["content"] == output


@pytest.mark.parametrize("tool", ["charge_card", "local_charge_card"])
def test_a_tool_configured_to_fail_the_run(stack: Stack, model: ScriptedModel, tool: str) -> None:
    client = stack.client()
    assistant, thread = _ask(client, _by_name(tool))
    model.reset()
    model.enqueue(Reply(tool_calls=[ToolCallSpec(tool, '{"amount_cents": 500}')]))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "server_error"
    assert f"The function tool {tool} failed" in run.last_error.message
    assert "payment provider rejected the charge" in run.last_error.message
    assert len(model.requests) == 1  # the model was not called again
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    assert step.status == "failed"


def test_registered_and_client_calls_in_one_round(stack: Stack, model: ScriptedModel) -> None:
    client = stack.client()
    client_tool: Any = {
        "type": "function",
        "function": {"name": "ask_user", "parameters": {"type": "object", "properties": {}}},
    }
    assistant, thread = _ask(client, [*_by_name("get_weather"), client_tool])
    model.reset()
    model.enqueue(
        Reply(
            tool_calls=[
                ToolCallSpec("get_weather", '{"city": "Oslo"}'),
                ToolCallSpec("ask_user", "{}"),
            ]
        ),
        Reply(text="Both answered."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    (pending,) = run.required_action.submit_tool_outputs.tool_calls
    assert pending.function.name == "ask_user"
    weather, user = _tool_outputs(client, thread.id, run.id)
    assert weather is not None and json.loads(weather)["city"] == "Oslo" and user is None
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": pending.id, "output": "yes"}],
    )
    assert done.status == "completed"
    assert _tool_outputs(client, thread.id, run.id)[1] == "yes"


def test_a_long_tool_heartbeats(stack: Stack, model: ScriptedModel) -> None:
    # slow_report's heartbeat timeout is 2 s: it finishes its 3 s in one attempt only because
    # the worker heartbeats while it runs.
    client = stack.client()
    assistant, thread = _ask(client, _by_name("slow_report"))
    model.reset()
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("slow_report", '{"seconds": 3}')]), Reply(text="Here.")
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert _tool_outputs(client, thread.id, run.id) == ["report ready after 3.0 s"]


def test_cancelling_a_run_stops_its_local_tool(stack: Stack, model: ScriptedModel) -> None:
    # A local activity cannot hear of the cancel through heartbeats, and the workflow hears of
    # it only at its next task: the worker's run watch stops the call (within about a second).
    client = stack.client()
    assistant, thread = _ask(client, _by_name("local_slow_report"))
    model.reset()
    model.enqueue(Reply(tool_calls=[ToolCallSpec("local_slow_report", '{"seconds": 30}')]))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 15
    while not client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the tool is running now
    began = time.monotonic()
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    final = wait_for_status(client, thread.id, run.id, {"cancelled", "completed"}, timeout=15)
    assert final.status == "cancelled"
    assert time.monotonic() - began < 8  # not the 30 s of the call
    assert _tool_outputs(client, thread.id, run.id) == [None]
    assert len(model.requests) == 1  # the model was not called again


def test_local_and_regular_tools_in_one_round(stack: Stack, model: ScriptedModel) -> None:
    client = stack.client()
    assistant, thread = _ask(client, _by_name("get_weather", "local_weather"))
    model.reset()
    model.enqueue(
        Reply(
            tool_calls=[
                ToolCallSpec("local_weather", '{"city": "Oslo"}'),
                ToolCallSpec("get_weather", '{"city": "Rome", "unit": "fahrenheit"}'),
            ]
        ),
        Reply(text="Both."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    oslo, rome = _tool_outputs(client, thread.id, run.id)
    assert oslo is not None and json.loads(oslo)["city"] == "Oslo"
    assert rome is not None and json.loads(rome)["temperature"] == 70


def test_the_tools_command_lists_registered_tools(stack: Stack) -> None:
    listing = stack.cli("tools")
    assert "get_weather: Current weather for a city." in listing
    assert "slow_report: Build a report that takes a while." in listing
    assert "heartbeat timeout 2s" in listing
    assert "local_weather: Current weather for a city." in listing
    assert "local activity" in listing


@pytest.fixture(scope="module", params=["sqlite"])
def crash_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="tool-crash",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
    ) as stack:
        yield stack


@pytest.mark.parametrize("tool", ["slow_report", "local_slow_report"])
def test_worker_killed_while_a_tool_runs(
    crash_stack: Stack, model: ScriptedModel, tool: str
) -> None:
    # A regular activity's call is retried after its heartbeat timeout; a local one's when the
    # restarted worker takes the workflow task over (it runs the whole task again).
    stack = crash_stack
    client = stack.client()
    assistant, thread = _ask(client, _by_name(tool))
    model.reset()
    model.enqueue(Reply(tool_calls=[ToolCallSpec(tool, '{"seconds": 4}')]), Reply(text="Done."))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 15
    while not client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # the tool is running now
    stack.kill_workers()
    stack.start_worker()
    final = wait_for_status(
        client, thread.id, run.id, {"completed", "failed", "expired"}, timeout=40
    )
    assert final.status == "completed"
    assert _tool_outputs(client, thread.id, run.id) == ["report ready after 4.0 s"]
    messages = client.beta.threads.messages.list(thread_id=thread.id).data
    assert [m.role for m in messages] == ["assistant", "user"]

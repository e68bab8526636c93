"""Function calling with the client answering: `requires_action`, `submit_tool_outputs` (polled
and streamed), several tool rounds, `tool_choice` and `parallel_tool_calls`, and bad submissions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Run

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import wait_for_status
from tests.support.messages import text_of
from tests.support.stack import Stack

WEATHER: Any = {
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
RAIN: Any = {
    "type": "function",
    "function": {
        "name": "get_rain_probability",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _assistant(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.beta.assistants.create(
        model="gpt-4o", instructions="Use the tools.", tools=[WEATHER, RAIN], **kwargs
    )


def _thread(client: openai.OpenAI) -> Any:
    return client.beta.threads.create(
        messages=[{"role": "user", "content": "Weather in Paris today?"}]
    )


def _two_calls() -> Reply:
    return Reply(
        tool_calls=[
            ToolCallSpec("get_temperature", '{"city": "Paris"}'),
            ToolCallSpec("get_rain_probability", '{"city": "Paris"}'),
        ]
    )


def test_poll_two_parallel_calls_then_submit(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(_two_calls(), Reply(text="22 degrees and a 10% chance of rain."))

    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_temperature", "get_rain_probability"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}] * 2
    assert len({c.id for c in calls}) == 2 and all(c.type == "function" for c in calls)
    assert run.expires_at is not None

    first = model.requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == [
        "get_temperature",
        "get_rain_probability",
    ]
    assert first.get("parallel_tool_calls") is True

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert len(steps) == 1 and steps[0].type == "tool_calls" and steps[0].status == "in_progress"
    assert steps[0].step_details.type == "tool_calls"
    assert [c.function.output for c in steps[0].step_details.tool_calls] == [None, None]  # type: ignore[union-attr]

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[
            {"tool_call_id": calls[0].id, "output": "22C"},
            {"tool_call_id": calls[1].id, "output": "10%"},
        ],
    )
    assert done.status == "completed" and done.required_action is None
    assert done.expires_at is None and done.usage is not None

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)
    tool_step = steps[0].step_details
    assert tool_step.type == "tool_calls"
    assert [c.function.output for c in tool_step.tool_calls] == ["22C", "10%"]  # type: ignore[union-attr]

    # The second model call saw the calls and the outputs as native tool messages.
    second = model.requests[1]["messages"]
    assistant_turn = next(m for m in second if m.get("tool_calls"))
    assert [c["id"] for c in assistant_turn["tool_calls"]] == [c.id for c in calls]
    tool_turns = [m for m in second if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_turns] == [
        (calls[0].id, "22C"),
        (calls[1].id, "10%"),
    ]
    messages = client.beta.threads.messages.list(thread_id=thread.id).data
    assert text_of(messages[0]) == "22 degrees and a 10% chance of rain."


def test_several_tool_rounds(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("get_temperature", '{"city": "Paris"}')]),
        Reply(
            text="Let me also check the rain.",
            tool_calls=[ToolCallSpec("get_rain_probability", '{"city": "Paris"}')],
        ),
        Reply(text="Warm and dry."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    for expected, output in (("get_temperature", "22C"), ("get_rain_probability", "0%")):
        assert run.status == "requires_action" and run.required_action is not None
        (call,) = run.required_action.submit_tool_outputs.tool_calls
        assert call.function.name == expected
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": output}],
        )
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == [
        "tool_calls",
        "message_creation",
        "tool_calls",
        "message_creation",
    ]
    texts = [
        text_of(m)
        for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
        if m.role == "assistant"
    ]
    assert texts == ["Let me also check the rain.", "Warm and dry."]
    # The third call saw both rounds in order.
    roles = [m["role"] for m in model.requests[2]["messages"]]
    assert roles[-5:] == ["assistant", "tool", "assistant", "assistant", "tool"]


class _Recorder(AssistantEventHandler):
    """The cookbook's handler: on `requires_action`, submit outputs and stream the rest."""

    def __init__(self, client: openai.OpenAI, outputs: dict[str, str], log: list[str]) -> None:
        super().__init__()
        self._client = client
        self._outputs = outputs
        self.log = log
        self.text = ""
        self.continuation: _Recorder | None = None

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.log.append(event.event)
        if event.event == "thread.run.requires_action":
            run = event.data
            assert run.required_action is not None
            outputs = [
                {"tool_call_id": c.id, "output": self._outputs[c.function.name]}
                for c in run.required_action.submit_tool_outputs.tool_calls
            ]
            self.continuation = _Recorder(self._client, self._outputs, self.log)
            with self._client.beta.threads.runs.submit_tool_outputs_stream(
                thread_id=run.thread_id,
                run_id=run.id,
                tool_outputs=outputs,  # type: ignore[arg-type]
                event_handler=self.continuation,
            ) as stream:
                stream.until_done()

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""


def test_streamed_handler_submits_outputs_and_streams_the_continuation(
    stack: Stack, model: ScriptedModel
) -> None:
    client = stack.client()
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(_two_calls(), Reply(text="It is 22 degrees with a 10% chance of rain."))
    log: list[str] = []
    handler = _Recorder(client, {"get_temperature": "22", "get_rain_probability": "10%"}, log)
    tool_deltas: list[Any] = []

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        for event in stream:
            if event.event == "thread.run.step.delta":
                tool_deltas.append(event.data.delta.step_details)
        first_run = stream.get_final_run()

    assert first_run.status == "requires_action"
    cut = log.index("thread.run.requires_action")
    first, rest = log[: cut + 1], log[cut + 1 :]
    assert first[:5] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
    ]
    assert "thread.run.step.delta" in first and "thread.message.created" not in first
    heads = [c for d in tool_deltas for c in d.tool_calls if c.id is not None]
    assert [(c.index, c.function.name) for c in heads] == [
        (0, "get_temperature"),
        (1, "get_rain_probability"),
    ]
    assert rest[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert "thread.run.created" not in rest
    assert rest[-1] == "thread.run.completed"
    assert handler.continuation is not None
    assert handler.continuation.text == "It is 22 degrees with a 10% chance of rain."
    final = client.beta.threads.runs.retrieve(first_run.id, thread_id=thread.id)
    assert final.status == "completed"


def _waiting_run(client: openai.OpenAI, model: ScriptedModel) -> tuple[Any, Run, list[str]]:
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(_two_calls(), Reply(text="Done."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    ids = [c.id for c in run.required_action.submit_tool_outputs.tool_calls]
    return thread, run, ids


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (lambda ids: [{"tool_call_id": ids[0], "output": "x"}], "Expected tool outputs for"),
        (
            lambda ids: [
                {"tool_call_id": ids[0], "output": "x"},
                {"tool_call_id": "call_unknown", "output": "y"},
            ],
            "Expected tool outputs for",
        ),
        (
            lambda ids: [
                {"tool_call_id": ids[0], "output": "x"},
                {"tool_call_id": ids[0], "output": "x"},
                {"tool_call_id": ids[1], "output": "y"},
            ],
            "Duplicate tool output for call_id",
        ),
        (lambda ids: [], "Expected tool outputs for"),
    ],
    ids=["partial", "unknown-id", "duplicate", "empty"],
)
def test_bad_submissions_leave_the_run_waiting(
    client: openai.OpenAI, model: ScriptedModel, outputs: Any, message: str
) -> None:
    thread, run, ids = _waiting_run(client, model)
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=outputs(ids)
        )
    assert message in error.value.message
    assert error.value.code is None or isinstance(error.value.code, str)
    body = error.value.body
    assert isinstance(body, dict) and body.get("param") == "tool_outputs"
    after = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert after.status == "requires_action"
    assert after.required_action == run.required_action
    # A good submission still works.
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": i, "output": "ok"} for i in ids],
    )
    assert done.status == "completed"
    # … and a second one for the same round is a 400 about the run's status.
    with pytest.raises(openai.BadRequestError) as late:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": i, "output": "ok"} for i in ids],
        )
    assert late.value.message == (
        'Error code: 400 - Runs in status "completed" do not accept tool outputs.'
    )


def test_cancel_while_waiting_for_outputs(client: openai.OpenAI, model: ScriptedModel) -> None:
    thread, run, ids = _waiting_run(client, model)
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    cancelled = wait_for_status(client, thread.id, run.id, {"cancelled"})
    assert cancelled.required_action is None and cancelled.expires_at is None
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    assert step.type == "tool_calls" and step.status == "cancelled"
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": i, "output": "late"} for i in ids],
        )
    assert error.value.message == (
        'Error code: 400 - Runs in status "cancelled" do not accept tool outputs.'
    )
    client.beta.threads.messages.create(thread.id, role="user", content="The thread is free.")


@pytest.mark.parametrize(
    "tool_choice",
    ["none", "auto", "required", {"type": "function", "function": {"name": "get_temperature"}}],
)
def test_tool_choice_reaches_the_model(
    client: openai.OpenAI, model: ScriptedModel, tool_choice: Any
) -> None:
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(text="Fine."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice=tool_choice
    )
    assert run.status == "completed"
    sent = model.requests[0]
    assert sent["tool_choice"] == tool_choice
    stored = run.tool_choice
    if not isinstance(stored, str):
        assert stored is not None
        stored = stored.model_dump(exclude_none=True)  # type: ignore[assignment]
    assert stored == tool_choice


def test_parallel_tool_calls_false_keeps_one_call(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = _assistant(client)
    thread = _thread(client)
    model.reset()
    model.enqueue(_two_calls(), Reply(text="Done."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, parallel_tool_calls=False
    )
    assert model.requests[0]["parallel_tool_calls"] is False
    assert run.status == "requires_action" and run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_temperature"
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "1"}]
    )
    assert done.status == "completed"


def test_tools_without_tools_are_not_sent(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(text="Hi."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert "tools" not in model.requests[0] and "tool_choice" not in model.requests[0]


def test_concurrent_submissions_each_answer_the_run_as_they_left_it(
    stack: Stack, model: ScriptedModel
) -> None:
    """OpenAI answers `submit_tool_outputs` with the run as the submission left it, `queued`.
    With 40 runs answering at once, the workflow often moves a run on to `in_progress` before
    the request answers: the answer must still be `queued`."""
    model.reset()

    def respond(body: dict[str, Any]) -> Reply:
        if body["messages"][-1]["role"] == "tool":
            return Reply(text="22 degrees.")
        return Reply(tool_calls=[ToolCallSpec("get_temperature", '{"city": "Paris"}')])

    model.set_responder(respond)

    async def scenario() -> tuple[list[str], list[str]]:
        client = stack.async_client()
        assistant = await client.beta.assistants.create(model="gpt-4o", tools=[WEATHER])

        async def waiting_run() -> Run:
            thread = await client.beta.threads.create(
                messages=[{"role": "user", "content": "Weather in Paris?"}]
            )
            return await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
            )

        waiting = await asyncio.gather(*(waiting_run() for _ in range(40)))
        assert all(r.status == "requires_action" for r in waiting)

        async def submit(run: Run) -> str:
            assert run.required_action is not None
            (call,) = run.required_action.submit_tool_outputs.tool_calls
            answer = await client.beta.threads.runs.submit_tool_outputs(
                run_id=run.id,
                thread_id=run.thread_id,
                tool_outputs=[{"tool_call_id": call.id, "output": "22C"}],
            )
            assert answer.id == run.id and answer.required_action is None
            return answer.status

        answers = await asyncio.gather(*(submit(r) for r in waiting))
        finals = await asyncio.gather(
            *(
                client.beta.threads.runs.poll(r.id, thread_id=r.thread_id, poll_interval_ms=100)
                for r in waiting
            )
        )
        await client.close()
        return list(answers), [f.status for f in finals]

    answers, finals = asyncio.run(scenario())
    assert answers == ["queued"] * 40
    assert finals == ["completed"] * 40

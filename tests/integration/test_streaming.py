"""Streaming runs: the SDK's event handler and raw streams, served from the durable event log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncAssistantEventHandler
from openai.types.beta import Thread
from openai.types.beta.threads import Run, Text, TextDelta
from typing_extensions import override

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.conftest import started_stack
from tests.integration.notebook import EventHandler, stream_and_cancel
from tests.support.contract import validate
from tests.support.stack import Stack

ANSWER = "A penguin is a flightless seabird of the Southern Hemisphere."

SCHEMAS = {
    "thread.created": "ThreadObject",
    "thread.message.delta": "MessageDeltaObject",
    "thread.run.step.delta": "RunStepDeltaObject",
}


def schema_for(event: str) -> str:
    if event in SCHEMAS:
        return SCHEMAS[event]
    if event.startswith("thread.run.step."):
        return "RunStepObject"
    if event.startswith("thread.message."):
        return "MessageObject"
    return "RunObject"


def read_sse(response: httpx.Response, limit: int | None = None) -> list[dict[str, Any]]:
    """Parse SSE frames: [{"id", "event", "data"}], stopping after `limit` frames."""
    frames: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                frames.append(current)
                current = {}
                if limit is not None and len(frames) >= limit:
                    break
            continue
        name, _, value = line.partition(": ")
        current[name] = value
    return frames


def setup_thread(
    client: openai.OpenAI, content: str = "Tell me what a penguin is."
) -> tuple[str, str]:
    assistant = client.beta.assistants.create(model="gpt-4o", instructions="You are helpful.")
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=content)
    return assistant.id, thread.id


def test_notebook_event_handler(
    client: openai.OpenAI, model: ScriptedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text=ANSWER, tokens_per_second=200))
    with client.beta.threads.runs.stream(
        thread_id=thread_id,
        assistant_id=assistant_id,
        event_handler=EventHandler(),
    ) as stream:
        stream.until_done()
        final_run = stream.get_final_run()
        final_messages = stream.get_final_messages()
    assert capsys.readouterr().out == "\nassistant text > " + ANSWER
    assert final_run.status == "completed" and final_run.usage is not None
    stored = client.beta.threads.messages.list(thread_id=thread_id).data[0]
    assert stored.content[0].type == "text" and stored.content[0].text.value == ANSWER
    assert final_messages[0].id == stored.id
    assert final_messages[0].content[0].type == "text"
    assert final_messages[0].content[0].text.value == ANSWER


def test_raw_stream_order_ids_and_schemas(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text=ANSWER, tokens_per_second=100))
    with (
        stack.http() as http,
        http.stream(
            "POST",
            f"/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = read_sse(response)
    assert frames[-1] == {"event": "done", "data": "[DONE]"}
    events = frames[:-1]
    assert [int(f["id"]) for f in events] == list(range(1, len(events) + 1))
    names = [f["event"] for f in events]
    deltas = names.count("thread.message.delta")
    assert deltas >= 1
    assert names == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    for frame in events:
        validate(schema_for(frame["event"]), json.loads(frame["data"]))
    created = json.loads(events[5]["data"])
    assert created["content"] == [] and created["status"] == "in_progress"
    text = "".join(
        d["text"]["value"]
        for f in events
        if f["event"] == "thread.message.delta"
        for d in json.loads(f["data"])["delta"]["content"]
    )
    assert text == ANSWER
    completed_run = json.loads(events[-1]["data"])
    assert completed_run["status"] == "completed" and completed_run["expires_at"] is None


def test_create_and_run_stream_starts_with_the_thread(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    model.enqueue(Reply(text=ANSWER))
    stream = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Penguins?"}]},
        stream=True,
    )
    events = list(stream)
    assert [e.event for e in events[:3]] == [
        "thread.created",
        "thread.run.created",
        "thread.run.queued",
    ]
    assert events[-1].event == "thread.run.completed"
    thread, run = events[0].data, events[-1].data
    assert isinstance(thread, Thread) and isinstance(run, Run)
    assert run.thread_id == thread.id

    model.enqueue(Reply(text=ANSWER))
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "Again"}]}
    ) as helper:
        assert "".join(helper.text_deltas) == ANSWER
    assert helper.get_final_run().status == "completed"


def test_cancel_from_inside_the_stream(client: openai.OpenAI, model: ScriptedModel) -> None:
    """The notebook's loop: cancel as soon as the run is in progress."""
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Penguins?"}])
    model.enqueue(Reply(text=ANSWER, ttft=2.0))
    cancelled_run, statuses = stream_and_cancel(client, thread, assistant)
    assert cancelled_run is not None and cancelled_run.status == "cancelling"
    assert statuses == [
        ("thread.run.created", "queued"),
        ("thread.run.queued", "queued"),
        ("thread.run.in_progress", "in_progress"),
        ("thread.run.cancelling", "cancelling"),
        ("thread.run.cancelled", "cancelled"),
    ]
    final = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=cancelled_run.id)
    assert final.status == "cancelled" and final.cancelled_at is not None


def test_first_delta_arrives_while_the_model_is_still_talking(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text="word " * 40, ttft=0.2, tokens_per_second=20))  # ~2.7 s
    started = time.monotonic()
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        for event in stream:
            if event.event == "thread.message.delta":
                assert model.in_flight == 1  # the model has not finished
                assert time.monotonic() - started < 1.5
                break
        stream.until_done()
    assert stream.get_final_run().status == "completed"


def test_resume_with_last_event_id(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text="word " * 30, tokens_per_second=20))
    with stack.http() as http:
        with http.stream(
            "POST",
            f"/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
        ) as response:
            first = read_sse(response, limit=7)  # up to message.in_progress, then drop
        run_id = json.loads(first[0]["data"])["id"]
        last_id = first[-1]["id"]
        with http.stream(
            "GET",
            f"/threads/{thread_id}/runs/{run_id}/events",
            headers={"Last-Event-ID": last_id},
        ) as response:
            assert response.status_code == 200
            rest = read_sse(response)
        with http.stream("GET", f"/threads/{thread_id}/runs/{run_id}/events") as response:
            everything = read_sse(response)
        # A finished run: resuming after its last event just says done.
        with http.stream(
            "GET",
            f"/threads/{thread_id}/runs/{run_id}/events",
            headers={"Last-Event-ID": everything[-2]["id"]},
        ) as response:
            assert read_sse(response) == [{"event": "done", "data": "[DONE]"}]
        bad = http.get(
            f"/threads/{thread_id}/runs/{run_id}/events", headers={"Last-Event-ID": "abc"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "Last-Event-ID"
    assert rest[-1]["event"] == "done"
    assert first + rest == everything  # nothing lost, nothing repeated
    assert [int(f["id"]) for f in everything[:-1]] == list(range(1, len(everything)))


def test_disconnect_does_not_cancel_the_run(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text="word " * 20, tokens_per_second=20))
    with (
        stack.http() as http,
        http.stream(
            "POST",
            f"/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
        ) as response,
    ):
        run_id = json.loads(read_sse(response, limit=1)[0]["data"])["id"]
    run = client.beta.threads.runs.poll(run_id, thread_id=thread_id)
    assert run.status == "completed"
    stored = client.beta.threads.messages.list(thread_id=thread_id).data[0]
    assert stored.content[0].type == "text"
    assert stored.content[0].text.value == "word " * 20


async def test_async_sdk_stream(stack: Stack, model: ScriptedModel) -> None:
    client = stack.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "Penguins, async."}]
    )
    deltas: list[str] = []

    class Handler(AsyncAssistantEventHandler):
        @override
        async def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
            deltas.append(delta.value or "")

    model.enqueue(Reply(text=ANSWER, tokens_per_second=100))
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Handler()
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert run.status == "completed"
    assert "".join(deltas) == ANSWER
    await client.close()


def test_errors_before_the_stream_are_json(stack: Stack, client: openai.OpenAI) -> None:
    assistant_id, thread_id = setup_thread(client)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(
            thread_id="thread_missing", assistant_id=assistant_id, stream=True
        )
    with stack.http() as http:
        response = http.post(
            f"/threads/{thread_id}/runs", json={"assistant_id": "asst_nope", "stream": True}
        )
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def keepalive_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="keepalive",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_STREAM_KEEPALIVE_S": "0.5"},
    ) as stack:
        yield stack


def test_keepalive_comments_during_a_long_silence(
    keepalive_stack: Stack, model: ScriptedModel
) -> None:
    client = keepalive_stack.client()
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(text=ANSWER, ttft=2.5))  # a model that thinks before it speaks
    comments = 0
    with (
        keepalive_stack.http() as http,
        http.stream(
            "POST",
            f"/threads/{thread_id}/runs",
            json={"assistant_id": assistant_id, "stream": True},
        ) as response,
    ):
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            comments += line.startswith(": keep-alive")
    assert comments >= 2
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"

    # The SDK reads through keep-alives between events without a hiccup.
    # Four chunks 0.67 s apart: a keep-alive (every 0.5 s) falls between the deltas.
    model.enqueue(Reply(text="Penguins swim.", ttft=0.3, tokens_per_second=1.5))
    names = [
        event.event
        for event in client.beta.threads.runs.create(
            thread_id=thread_id, assistant_id=assistant_id, stream=True
        )
    ]
    assert names[-1] == "thread.run.completed"


def test_a_failure_inside_the_run_arrives_as_run_failed(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant_id, thread_id = setup_thread(client)
    model.enqueue(Reply(status=400, error_message="context too long"))
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id) as stream:
        names = [event.event for event in stream]  # the handler never raises
        run = stream.get_final_run()
    assert names[-1] == "thread.run.failed"
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "invalid_prompt" and "context too long" in run.last_error.message

"""The seeds' non-streaming flow, with the SDK calls exactly as the notebook makes them."""

from __future__ import annotations

import time

import openai

from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.support.contract import validate
from tests.support.stack import Stack


def test_notebook_flow(client: openai.OpenAI, model: ScriptedModel, stack: Stack) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        instructions="You are a helpful assistant.",
        name="Son of Run Tester Assistant",
        metadata={"holds_threads": "True", "likes_threads": "True"},
        temperature=1,
        top_p=1,
    )
    assert assistant.metadata == {"holds_threads": "True", "likes_threads": "True"}
    assert assistant.temperature == 1.0 and assistant.top_p == 1.0
    assert assistant.response_format == "auto" and assistant.tools == []

    thread = client.beta.threads.create(metadata={"user": "abc123"})
    assert thread.metadata == {"user": "abc123"}
    message = client.beta.threads.messages.create(
        thread_id=thread.id,
        role="user",
        content="Tell me what a penguin is in 100 words or less.",
        metadata={"key": "value"},
    )
    assert message.content[0].type == "text"
    assert message.content[0].text.value == "Tell me what a penguin is in 100 words or less."

    model.enqueue(
        Reply(text="A penguin is a flightless seabird.", prompt_tokens=44, completion_tokens=9)
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert run.usage is not None and (run.usage.prompt_tokens, run.usage.completion_tokens) == (
        44,
        9,
    )
    assert run.usage.total_tokens == 53
    assert run.expires_at is None and run.completed_at is not None and run.started_at is not None
    assert run.instructions == "You are a helpful assistant."
    assert run.truncation_strategy is not None and run.truncation_strategy.type == "auto"

    # What reached the model: the instructions as system message, then the user's message.
    sent = model.requests[-1]
    assert sent["model"] == "gpt-4o" and sent["temperature"] == 1 and sent["top_p"] == 1
    assert sent["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert sent["messages"][-1]["content"] == "Tell me what a penguin is in 100 words or less."

    messages = client.beta.threads.messages.list(thread_id=thread.id)
    assert [m.role for m in messages] == ["assistant", "user"]  # newest first by default
    reply = messages.data[0]
    assert reply.content[0].type == "text"
    assert reply.content[0].text.value == "A penguin is a flightless seabird."
    assert reply.run_id == run.id and reply.assistant_id == assistant.id
    assert reply.status == "completed"
    assert [
        m.id for m in client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id)
    ] == [reply.id]

    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    assert [s.type for s in steps] == ["message_creation"]
    assert steps.data[0].step_details.type == "message_creation"
    assert steps.data[0].step_details.message_creation.message_id == reply.id
    assert steps.data[0].status == "completed" and steps.data[0].usage is not None
    step = client.beta.threads.runs.steps.retrieve(
        steps.data[0].id, thread_id=thread.id, run_id=run.id
    )
    assert step.id == steps.data[0].id

    # A second run; runs.list in both orders, runs.retrieve, runs.update.
    model.enqueue(Reply(text="Penguins live in the Southern Hemisphere."))
    second = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )
    assert second.status == "completed"
    desc = [r.id for r in client.beta.threads.runs.list(thread_id=thread.id)]
    asc = [r.id for r in client.beta.threads.runs.list(thread_id=thread.id, order="asc")]
    assert desc == [second.id, run.id] and asc == [run.id, second.id]
    fetched = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
    assert fetched.id == run.id and fetched.status == "completed"
    updated = client.beta.threads.runs.update(
        thread_id=thread.id, run_id=run.id, metadata={"user_id": "user_abc123"}
    )
    assert updated.metadata == {"user_id": "user_abc123"}
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).metadata == {
        "user_id": "user_abc123"
    }

    # Every raw response validates against the official schemas.
    with stack.http() as http:
        validate("AssistantObject", http.get(f"/assistants/{assistant.id}").json())
        validate("ThreadObject", http.get(f"/threads/{thread.id}").json())
        validate("ListMessagesResponse", http.get(f"/threads/{thread.id}/messages").json())
        validate("RunObject", http.get(f"/threads/{thread.id}/runs/{run.id}").json())
        validate("ListRunsResponse", http.get(f"/threads/{thread.id}/runs").json())
        validate(
            "ListRunStepsResponse", http.get(f"/threads/{thread.id}/runs/{run.id}/steps").json()
        )
        validate("ListAssistantsResponse", http.get("/assistants").json())


def test_create_and_run_then_poll(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
    model.enqueue(Reply(text="Deep learning is teaching computers with many examples."))
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={
            "messages": [
                {"role": "user", "content": "Explain deep learning to me like I'm a 5 year old."}
            ]
        },
    )
    assert run.status == "queued" and run.expires_at is not None
    assert run.expires_at - run.created_at == 600
    deadline = time.monotonic() + 30
    while run.status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        run = client.beta.threads.runs.retrieve(thread_id=run.thread_id, run_id=run.id)
    assert run.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=run.thread_id, order="asc")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages.data[1].content[0].type == "text"
    assert messages.data[1].content[0].text.value.startswith("Deep learning")

    polled = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "Again?"}]}
    )
    assert polled.status == "completed" and polled.thread_id != run.thread_id


def test_poll_interval_header(stack: Stack, client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create()
    with stack.http() as http:
        response = http.post(f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id})
        assert response.status_code == 200
        assert response.headers["openai-poll-after-ms"] == "50"
        run = response.json()
        validate("RunObject", run)
    client.beta.threads.runs.poll(run["id"], thread_id=thread.id)


def test_pagination(client: openai.OpenAI, stack: Stack) -> None:
    thread = client.beta.threads.create()
    ids = [
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=f"m{i}").id
        for i in range(7)
    ]
    page = client.beta.threads.messages.list(thread_id=thread.id, limit=3, order="asc")
    assert [m.id for m in page.data] == ids[:3] and page.has_more
    # The SDK follows `after` cursors, in either order.
    forward = client.beta.threads.messages.list(thread_id=thread.id, limit=3, order="asc")
    assert [m.id for m in forward] == ids
    backward = client.beta.threads.messages.list(thread_id=thread.id, limit=2)
    assert [m.id for m in backward] == ids[::-1]
    before = client.beta.threads.messages.list(
        thread_id=thread.id, order="asc", before=ids[5], limit=2
    )
    assert [m.id for m in before.data] == ids[3:5] and before.has_more
    with stack.http() as http:
        body = http.get(f"/threads/{thread.id}/messages", params={"limit": 7}).json()
        assert (
            body["first_id"] == ids[-1] and body["last_id"] == ids[0] and body["has_more"] is False
        )
        empty = http.get(f"/threads/{thread.id}/messages", params={"after": ids[0]}).json()
        assert empty == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }

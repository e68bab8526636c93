"""The seeds' non-streaming flow, with the SDK calls exactly as the notebook makes them."""

from __future__ import annotations

import time

import openai
import pytest

from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.integration import notebook
from tests.support.contract import validate
from tests.support.stack import Stack

# The model's answers in the seeds' notebook (In [7], In [13]/[16]/[17], In [19]).
PENGUIN = (
    "A penguin is a flightless seabird belonging to the Spheniscidae family, primarily found in "
    "the Southern Hemisphere, especially Antarctica. Known for their distinctive black and white "
    "plumage, penguins are adept swimmers, using their flipper-like wings to navigate underwater. "
    "They feed mainly on fish, squid, and krill. Penguins are highly social animals, often living "
    "in large colonies. They have various species, including the Emperor, King, and Adélie "
    "penguins. Adaptations like thick blubber and dense feathers help them survive harsh, cold "
    "environments. Penguins also exhibit unique behaviors, such as huddling for warmth and "
    "prolonged parental care."
)
PENGUIN_AGAIN = (
    "A penguin is a flightless seabird from the Spheniscidae family, primarily found in the "
    "Southern Hemisphere, especially Antarctica. Recognizable by their black and white plumage, "
    "penguins are excellent swimmers, using their flipper-like wings underwater. They primarily "
    "consume fish, squid, and krill. Social in nature, penguins often gather in large colonies. "
    "There are various species, including the Emperor, King, and Adélie penguins. They possess "
    "adaptations like thick blubber and dense feathers to endure cold environments. Unique "
    "behaviors include huddling for warmth and extended parental care."
)
PENGUIN_JSON = '{\n  "description": "' + PENGUIN_AGAIN + '"\n}'
HANDLER_PREFIX = "\nassistant text > "  # what the notebook's EventHandler prints first


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


def _runs_printout(runs: list[tuple[str, str, str]]) -> str:
    """What In [14] and In [20] print for (id, status, incomplete_details) rows."""
    return "".join(f"{run_id}\n{status}\n{details}\n\n\n" for run_id, status, details in runs)


def test_notebook_streaming_cells(
    client: openai.OpenAI, model: ScriptedModel, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Part 9's streaming cells as written, in order, with what the seed output shows."""
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        instructions="You are a helpful assistant.",
        name="Son of Run Tester Assistant",
        metadata={"holds_threads": "True", "likes_threads": "True"},
        temperature=1,
        top_p=1,
    )
    thread = client.beta.threads.create(metadata={"user": "abc123"})
    client.beta.threads.messages.create(
        thread_id=thread.id,
        role="user",
        content="Tell me what a penguin is in 100 words or less.",
        metadata={"key": "value"},
    )

    # In [7]: the streamed answer, printed by the handler.
    model.enqueue(Reply(text=PENGUIN))
    notebook.stream_run(client, thread, assistant)
    assert capsys.readouterr().out == HANDLER_PREFIX + PENGUIN
    first = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert first.status == "completed"

    # In [8]: two messages, the answer first.
    notebook.count_messages(client, thread)
    out = capsys.readouterr().out
    assert out.endswith("Total number of messages: 2\n")
    assert out.index(PENGUIN) < out.index("Tell me what a penguin is in 100 words or less.")

    # In [9]: the page's repr, then the run's id and status.
    notebook.dump_runs(client, thread)
    out = capsys.readouterr().out
    assert out.startswith(f"SyncCursorPage[Run](data=[Run(id='{first.id}'")
    assert out.endswith(f"{first.id}\ncompleted\n\n\n")

    # In [13]: 16 completion tokens. The hosted service accepted it and cut the answer short:
    # the seed printed "A penguin is a flightless seabird from the Spheniscidae". The scripted
    # model stops at the request's limit (one 4-character chunk per token).
    model.enqueue(Reply(text=PENGUIN_AGAIN))
    notebook.stream_limiting_completion_tokens(client, thread, assistant)
    cut = PENGUIN_AGAIN[:64]
    assert cut.startswith("A penguin is a flightless seabird from the Spheniscidae")
    assert capsys.readouterr().out == HANDLER_PREFIX + cut
    assert model.requests[-1]["max_completion_tokens"] == 16
    limited = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert limited.status == "incomplete"
    assert limited.incomplete_details is not None
    assert limited.incomplete_details.reason == "max_completion_tokens"
    assert limited.max_completion_tokens == 16
    assert limited.usage is not None and limited.usage.completion_tokens == 16
    partial = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert partial.run_id == limited.id and partial.status == "incomplete"
    assert partial.content[0].type == "text" and partial.content[0].text.value == cut

    # In [14]: the runs with their incomplete_details, as the seed printed them.
    notebook.list_runs_with_details(client, thread)
    assert capsys.readouterr().out == _runs_printout(
        [
            (limited.id, "incomplete", "IncompleteDetails(reason='max_completion_tokens')"),
            (first.id, "completed", "None"),
        ]
    )

    # In [16] and In [17]: both truncation strategies fit the whole thread in 1000 tokens.
    model.enqueue(Reply(text=PENGUIN_AGAIN), Reply(text=PENGUIN_AGAIN))
    notebook.stream_with_last_messages(client, thread, assistant)
    assert capsys.readouterr().out == HANDLER_PREFIX + PENGUIN_AGAIN
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "assistant"]
    notebook.stream_with_auto_truncation(client, thread, assistant)
    assert capsys.readouterr().out == HANDLER_PREFIX + PENGUIN_AGAIN
    assert len(model.requests[-1]["messages"]) == 5

    # In [18]: five messages now.
    notebook.count_messages(client, thread)
    assert capsys.readouterr().out.endswith("Total number of messages: 5\n")

    # In [19]: JSON mode through additional_instructions (and an explicit tool_choice=None).
    model.enqueue(Reply(text=PENGUIN_JSON))
    notebook.stream_json_with_additional_instructions(client, thread, assistant)
    assert capsys.readouterr().out == HANDLER_PREFIX + PENGUIN_JSON
    combined = "You are a helpful assistant. Make sure your output is in JSON format."
    sent_json = model.requests[-1]
    assert sent_json["response_format"] == {"type": "json_object"}
    assert sent_json["messages"][0] == {"role": "system", "content": combined}

    # In [20] and In [21]: every run, newest first; the first one is the last run.
    ids = [r.id for r in client.beta.threads.runs.list(thread_id=thread.id, order="desc")]
    assert len(ids) == 5 and ids[3:] == [limited.id, first.id]
    expected = _runs_printout(
        [
            (ids[0], "completed", "None"),
            (ids[1], "completed", "None"),
            (ids[2], "completed", "None"),
            (limited.id, "incomplete", "IncompleteDetails(reason='max_completion_tokens')"),
            (first.id, "completed", "None"),
        ]
    )
    notebook.list_runs_descending(client, thread)
    assert capsys.readouterr().out == expected
    runs_list = notebook.last_run_id(client, thread)
    assert capsys.readouterr().out == f"Last run ID: {ids[0]}\n" + expected

    # In [22]: the last run's instructions read as the hosted API printed them: the assistant's
    # instructions and the additional ones, joined by one space.
    run = notebook.retrieve_last_run(client, thread, runs_list)
    out = capsys.readouterr().out
    assert out.startswith(f"Run(id='{ids[0]}', assistant_id='{assistant.id}'")
    assert f"instructions='{combined}'" in out
    assert "incomplete_details=None" in out and "status='completed'" in out
    assert "max_completion_tokens=None" in out and "tool_choice='auto'" in out
    assert run.instructions == combined
    assert run.response_format is not None and not isinstance(run.response_format, str)
    assert run.response_format.type == "json_object"

    # The raw answers, with the 16-token run among them, validate against the official schemas
    # (with the seeds' minimum for max_completion_tokens).
    with stack.http() as http:
        validate("ListRunsResponse", http.get(f"/threads/{thread.id}/runs").json())
        validate("RunObject", http.get(f"/threads/{thread.id}/runs/{limited.id}").json())
        zero = http.post(
            f"/threads/{thread.id}/runs",
            json={"assistant_id": assistant.id, "max_completion_tokens": 0},
        )
        assert zero.status_code == 400
        assert zero.json()["error"] == {
            "message": "Invalid 'max_completion_tokens': integer below minimum value. Expected a "
            "value >= 1, but got 0 instead.",
            "type": "invalid_request_error",
            "param": "max_completion_tokens",
            "code": "integer_below_min_value",
        }
        small_prompt = http.post(
            f"/threads/{thread.id}/runs",
            json={"assistant_id": assistant.id, "max_prompt_tokens": 5},
        )
        assert small_prompt.status_code == 400
        assert small_prompt.json()["error"]["param"] == "max_prompt_tokens"

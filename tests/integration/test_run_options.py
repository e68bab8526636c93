"""Run creation options: token limits, response_format, additional instructions and messages,
overrides of the assistant's settings, truncation."""

from __future__ import annotations

import openai
from openai.types.shared_params import ResponseFormatJSONSchema

from assistants.testing.scripted_model import Reply, ScriptedModel


def test_max_completion_tokens_makes_the_run_incomplete(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "What is a penguin?"}]
    )
    model.enqueue(Reply(text="A penguin is a flightless seabird from the", finish_reason="length"))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=256
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.max_completion_tokens == 256 and run.completed_at is not None
    assert model.requests[-1]["max_completion_tokens"] == 256
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.role == "assistant" and message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text.value == "A penguin is a flightless seabird from the"
    # The thread is free again.
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Go on.")


def test_max_prompt_tokens_makes_the_run_incomplete(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    long_question = "Tell me everything about penguins. " * 60  # ~525 tokens
    thread = client.beta.threads.create(messages=[{"role": "user", "content": long_question}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert model.requests == []  # the prompt could not fit even after truncation

    # Backend-reported usage over the budget ends the run the same way.
    short = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello!", prompt_tokens=300, completion_tokens=2))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=short.id, assistant_id=assistant.id, max_prompt_tokens=256
    )
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert run.usage is not None and run.usage.prompt_tokens == 300


def test_auto_truncation_drops_old_messages_to_fit(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    old = "An old and very long digression about icebergs. " * 40  # ~490 tokens
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": old},
            {"role": "user", "content": "What is a penguin?"},
        ]
    )
    model.enqueue(Reply(text="A bird."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256
    )
    assert run.status == "completed"
    sent = model.requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["What is a penguin?"]


def test_response_format_and_additional_instructions(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o", instructions="You are a helpful assistant."
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "A penguin fact"}])
    model.enqueue(Reply(text='{"fact": "Penguins cannot fly."}'))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        response_format={"type": "json_object"},
        additional_instructions="Make sure your output is in JSON format.",
    )
    assert run.status == "completed"
    assert run.response_format is not None and not isinstance(run.response_format, str)
    assert run.response_format.type == "json_object"
    # As the hosted API showed it (the seeds): the run's instructions are the combined text,
    # and they are exactly what the model was told.
    combined = "You are a helpful assistant. Make sure your output is in JSON format."
    assert run.instructions == combined
    sent = model.requests[-1]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0] == {"role": "system", "content": combined}
    listed = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert listed.id == run.id and listed.instructions == combined
    # The assistant itself is unchanged.
    assert client.beta.assistants.retrieve(assistant.id).instructions == (
        "You are a helpful assistant."
    )

    schema: dict[str, object] = {
        "type": "object",
        "properties": {"fact": {"type": "string"}},
        "required": ["fact"],
    }
    model.enqueue(Reply(text='{"fact": "They swim."}'))
    structured: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {"name": "fact", "schema": schema, "strict": True},
    }
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, response_format=structured
    )
    assert run.status == "completed"
    assert run.instructions == "You are a helpful assistant."  # no additions: the assistant's
    assert model.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "fact", "schema": schema, "strict": True},
    }


def test_run_overrides_and_additional_messages(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o", instructions="Assistant instructions.", temperature=0.2, top_p=0.9
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    model.enqueue(Reply(text="ok"))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model="llama3",
        instructions="Run instructions.",
        temperature=1.5,
        additional_messages=[{"role": "user", "content": "second", "metadata": {"k": "v"}}],
        truncation_strategy={"type": "last_messages", "last_messages": 1},
        metadata={"source": "test"},
    )
    assert run.status == "completed"
    assert (run.model, run.instructions, run.temperature, run.top_p) == (
        "llama3",
        "Run instructions.",
        1.5,
        0.9,
    )
    assert run.metadata == {"source": "test"}
    assert run.truncation_strategy is not None
    assert run.truncation_strategy.last_messages == 1
    sent = model.requests[-1]
    assert sent["model"] == "llama3" and sent["temperature"] == 1.5 and sent["top_p"] == 0.9
    assert sent["messages"] == [
        {"role": "system", "content": "Run instructions."},
        {"role": "user", "content": "second"},
    ]
    roles = [m.role for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc")]
    assert roles == ["user", "user", "assistant"]

    # A later change to the assistant does not change the run already made.
    client.beta.assistants.update(assistant.id, instructions="Changed.")
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).instructions == (
        "Run instructions."
    )

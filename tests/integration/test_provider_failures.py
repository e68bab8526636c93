"""The model backend failing: retried errors, fatal errors, Retry-After."""

from __future__ import annotations

import time

import openai

from assistants.testing.scripted_model import Reply, ScriptedModel


def _thread_and_assistant(client: openai.OpenAI) -> tuple[str, str]:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello"}])
    return thread.id, assistant.id


def test_server_errors_are_retried(client: openai.OpenAI, model: ScriptedModel) -> None:
    thread_id, assistant_id = _thread_and_assistant(client)
    model.enqueue(Reply(status=500), Reply(status=503), Reply(text="Third time lucky."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed" and run.last_error is None
    assert len(model.requests) == 3
    messages = client.beta.threads.messages.list(thread_id=thread_id)
    assert [m.role for m in messages] == ["assistant", "user"]  # exactly one answer
    assert messages.data[0].content[0].type == "text"
    assert messages.data[0].content[0].text.value == "Third time lucky."


def test_rate_limit_honours_retry_after(client: openai.OpenAI, model: ScriptedModel) -> None:
    thread_id, assistant_id = _thread_and_assistant(client)
    model.enqueue(Reply(status=429, retry_after=1.5), Reply(text="ok"))
    started = time.monotonic()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    assert time.monotonic() - started >= 1.5  # not the 0.2 s the retry policy would use


def test_client_error_fails_the_run(client: openai.OpenAI, model: ScriptedModel) -> None:
    thread_id, assistant_id = _thread_and_assistant(client)
    model.enqueue(Reply(status=400, error_message="model 'gpt-5' does not exist"))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "failed" and run.failed_at is not None and run.expires_at is None
    assert run.last_error is not None
    assert run.last_error.code == "invalid_prompt"
    assert "model 'gpt-5' does not exist" in run.last_error.message
    assert len(model.requests) == 1  # not retried
    # Nothing half-written: no assistant message, and the thread is unlocked.
    assert [m.role for m in client.beta.threads.messages.list(thread_id=thread_id)] == ["user"]
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content="Still there?")


def test_persistent_server_errors_fail_the_run_after_bounded_retries(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    thread_id, assistant_id = _thread_and_assistant(client)
    model.default_reply = Reply(status=502, error_message="bad gateway")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert len(model.requests) == 6  # ASSISTANTS_MODEL_RETRY_MAX_ATTEMPTS default


def test_failure_mid_stream_is_retried(client: openai.OpenAI, model: ScriptedModel) -> None:
    thread_id, assistant_id = _thread_and_assistant(client)
    text = "A complete answer that the first attempt could not finish."
    model.enqueue(Reply(text=text, drop_after_chunks=3), Reply(text=text))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id)
    assert run.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=thread_id)
    assert [m.role for m in messages] == ["assistant", "user"]
    assert messages.data[0].content[0].type == "text"
    assert messages.data[0].content[0].text.value == text

"""Cancelling runs, and runs expiring on their durable timer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack, wait_for_status
from tests.support.stack import Stack


def _wait(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_cancel_stops_the_model_call(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Talk slowly"}])
    model.enqueue(Reply(text="word " * 200, tokens_per_second=10))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    _wait(lambda: model.in_flight == 1)
    wait_for_status(client, thread.id, run.id, {"in_progress"})
    time.sleep(0.5)  # let some text stream

    cancelling = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelling.status == "cancelling"
    cancelled = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert cancelled.expires_at is None
    _wait(lambda: model.in_flight == 0, timeout=5)  # the model stream was really closed

    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.role == "assistant" and message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_cancelled"
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "cancelled" and step.cancelled_at is not None

    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert error.value.message == "Error code: 400 - Cannot cancel run with status 'cancelled'."
    # The thread is free.
    model.enqueue(Reply(text="Done."))
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert again.status == "completed"


def test_cancel_a_queued_run_before_the_model_answers(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="late", ttft=20))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    cancelled = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status == "cancelling"
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert final.status == "cancelled"
    _wait(lambda: model.in_flight == 0, timeout=5)
    # No message was produced, so nothing is left behind.
    assert [m.role for m in client.beta.threads.messages.list(thread_id=thread.id)] == ["user"]


def test_cancel_reaches_a_model_call_that_has_not_answered_yet(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    """A model round is a local activity, which hears no cancel signal while it runs: it
    watches the store's `cancelling` itself, so a silent model is cut off within seconds,
    not when it answers."""
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="much too late", ttft=60))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    _wait(lambda: model.in_flight == 1)
    wait_for_status(client, thread.id, run.id, {"in_progress"})
    requested = time.monotonic()
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    final = wait_for_status(client, thread.id, run.id, {"cancelled", "completed", "failed"}, 30)
    assert final.status == "cancelled"
    _wait(lambda: model.in_flight == 0, timeout=5)  # the model stream was closed
    # Without the watch, the signal would reach the workflow only at its next workflow task
    # (the SDK ends a task whose local activity runs on only near its 10 s timeout).
    assert time.monotonic() - requested < 5, "the cancel waited for the workflow task"
    assert [m.role for m in client.beta.threads.messages.list(thread_id=thread.id)] == ["user"]


def test_cancel_of_a_completed_run_is_refused(client: openai.OpenAI, model: ScriptedModel) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert error.value.message == "Error code: 400 - Cannot cancel run with status 'completed'."
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def short_expiry_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="expiry",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_RUN_EXPIRES_AFTER_S": "5"},
    ) as stack:
        yield stack


def test_a_run_that_takes_too_long_expires(short_expiry_stack: Stack, model: ScriptedModel) -> None:
    client = short_expiry_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="too late " * 50, tokens_per_second=4))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert run.expires_at == run.created_at + 5
    # The answer is streaming (its message exists) well before the run expires.
    _wait(lambda: len(client.beta.threads.messages.list(thread_id=thread.id).data) == 2, 4)
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert final.status == "expired" and final.expires_at is None
    _wait(lambda: model.in_flight == 0, timeout=5)
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details is not None
    assert message.incomplete_details.reason == "run_expired"
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "expired" and step.expired_at is not None
    # The thread is unlocked and a new run works.
    model.enqueue(Reply(text="quick"))
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert again.status == "completed"


def test_tool_outputs_that_never_come_expire_the_run_across_a_worker_restart(
    short_expiry_stack: Stack, model: ScriptedModel
) -> None:
    stack = short_expiry_stack
    client = stack.client()
    function: Any = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[function])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Look it up"}])
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id

    # The wait is a durable timer: a worker killed and replaced during it changes nothing.
    stack.kill_workers()
    stack.start_worker()
    final = wait_for_status(client, thread.id, run.id, {"expired"}, timeout=20)
    assert final.expires_at is None and final.required_action is None
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.type == "tool_calls" and step.status == "expired" and step.expired_at is not None

    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call_id, "output": "too late"}],
        )
    assert error.value.message == (
        'Error code: 400 - Runs in status "expired" do not accept tool outputs.'
    )
    # Replayed from the start, the stream stops where the original one did, at
    # `requires_action`; resumed from there, it shows the expiry.
    with stack.http() as http:
        first = http.get(f"/threads/{thread.id}/runs/{run.id}/events?after=0").text
        ids = [line[len("id: ") :] for line in first.splitlines() if line.startswith("id: ")]
        assert "event: thread.run.requires_action" in first
        rest = http.get(f"/threads/{thread.id}/runs/{run.id}/events?after={ids[-1]}").text
    names = [line[len("event: ") :] for line in rest.splitlines() if line.startswith("event: ")]
    assert names == ["thread.run.step.expired", "thread.run.expired", "done"]
    # The thread is unlocked.
    client.beta.threads.messages.create(thread.id, role="user", content="Still there?")

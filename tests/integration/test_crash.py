"""Crash recovery with real processes: SIGKILL the worker mid-stream, restart the API, restart the
Temporal server (state persisted) — and every run still completes exactly once; a webhook
delivery pending when the worker dies is still delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from temporalio.client import Client

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack, wait_for_status
from tests.support.stack import Stack
from tests.support.webhook_receiver import WebhookReceiver, delivery_ids, subscribed

pytestmark = pytest.mark.slow

ANSWER = (
    "Penguins are flightless birds that live almost exclusively in the Southern Hemisphere. " * 3
)


@pytest.fixture(params=["sqlite", "postgres"])
def crash_stack(
    request: pytest.FixtureRequest,
    own_temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name=f"crash-{request.node.originalname}"[:40],
        temporal_address=own_temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
    ) as stack:
        yield stack


def _start_slow_run(client: openai.OpenAI, model: ScriptedModel) -> tuple[str, str]:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Penguins?"}])
    # ~64 chunks at 20/s: about three seconds of streaming per attempt.
    slow = Reply(text=ANSWER, tokens_per_second=20, prompt_tokens=12, completion_tokens=64)
    model.enqueue(slow, slow)
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    return thread.id, run.id


def _assert_completed_once(client: openai.OpenAI, thread_id: str, run_id: str) -> None:
    run = wait_for_status(client, thread_id, run_id, {"completed", "failed", "expired"}, 90)
    assert run.status == "completed", run.last_error
    assert run.usage is not None
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (12, 64)
    messages = client.beta.threads.messages.list(thread_id=thread_id)
    assert [m.role for m in messages] == ["assistant", "user"]  # exactly one assistant message
    assert messages.data[0].content[0].type == "text"
    assert messages.data[0].content[0].text.value == ANSWER
    steps = client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id)
    assert [s.status for s in steps] == ["completed"]
    # The thread lock was released.
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content="Thanks")


def test_worker_sigkill_while_the_model_streams(crash_stack: Stack, model: ScriptedModel) -> None:
    client = crash_stack.client()
    thread_id, run_id = _start_slow_run(client, model)
    model.wait_for_requests(1)
    time.sleep(1.0)  # mid-stream: part of the answer is already in the event log
    crash_stack.kill_workers()
    assert client.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status == "in_progress"
    crash_stack.start_worker()
    _assert_completed_once(client, thread_id, run_id)
    assert len(model.requests) == 2  # the interrupted call was retried once, on the new worker


def test_api_restart_mid_run(crash_stack: Stack, model: ScriptedModel) -> None:
    client = crash_stack.client()
    thread_id, run_id = _start_slow_run(client, model)
    model.wait_for_requests(1)
    crash_stack.kill_api()
    time.sleep(1.0)
    crash_stack.start_api()
    _assert_completed_once(client, thread_id, run_id)


def test_temporal_restart_mid_run(
    crash_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    client = crash_stack.client()
    thread_id, run_id = _start_slow_run(client, model)
    model.wait_for_requests(1)
    own_temporal.kill()
    time.sleep(1.0)
    own_temporal.start()
    _assert_completed_once(client, thread_id, run_id)


def test_run_created_while_temporal_is_down_starts_when_it_is_back(
    crash_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    client = crash_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello?"}])
    own_temporal.kill()
    try:
        model.enqueue(Reply(text="Back online."))
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        assert run.status == "queued"  # safe in the store, not yet a workflow
    finally:
        own_temporal.start()
    final = wait_for_status(client, thread.id, run.id, {"completed", "failed"}, 60)
    assert final.status == "completed"


def test_worker_sigkill_mid_stream_keeps_the_stream_valid(
    crash_stack: Stack, model: ScriptedModel
) -> None:
    """The SDK's handler never raises, and what it assembled equals what the thread holds."""
    client = crash_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Penguins?"}])
    slow = Reply(text=ANSWER, tokens_per_second=20, prompt_tokens=12, completion_tokens=64)
    model.enqueue(slow, slow)
    deltas: list[str] = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            if event.event == "thread.message.delta":
                deltas.extend(
                    part.text.value or ""
                    for part in event.data.delta.content or []
                    if part.type == "text" and part.text is not None
                )
                if len(deltas) == 3:
                    crash_stack.kill_workers()
                    crash_stack.start_worker()
        final_run = stream.get_final_run()
        final_messages = stream.get_final_messages()
    assert final_run.status == "completed"
    assert len(model.requests) == 2  # the call was retried after the kill
    stored = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert stored.content[0].type == "text" and stored.content[0].text.value == ANSWER
    # The retried attempt re-generated the same text; only what went beyond the first attempt
    # was streamed again, so the deltas add up to the message exactly once.
    assert "".join(deltas) == ANSWER
    assert final_messages[-1].content[0].type == "text"
    assert final_messages[-1].content[0].text.value == ANSWER


@pytest.fixture(params=["sqlite"])
def short_expiry_crash_stack(
    request: pytest.FixtureRequest,
    own_temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="crash-expiry",
        temporal_address=own_temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_RUN_EXPIRES_AFTER_S": "8"},
    ) as stack:
        yield stack


def test_the_wait_for_tool_outputs_survives_temporal_and_worker_restarts(
    short_expiry_crash_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    stack = short_expiry_crash_stack
    client = stack.client()
    function: Any = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[function])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Look it up"}])
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"

    # Everything that holds the durable timer goes down during the wait, and comes back.
    stack.kill_workers()
    own_temporal.kill()
    time.sleep(1.0)
    own_temporal.start()
    stack.start_worker()
    final = wait_for_status(client, thread.id, run.id, {"expired", "completed"}, timeout=40)
    assert final.status == "expired" and final.expires_at is None
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]
    assert step.status == "expired"
    client.beta.threads.messages.create(thread.id, role="user", content="Unlocked.")


async def test_a_webhook_delivery_survives_a_worker_sigkill(
    crash_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    """The receiver is down when the run ends; the worker is SIGKILLed while the delivery
    waits to retry, after the run's workflow has closed. The restarted worker delivers it:
    every attempt the same event with the same `Webhook-Id`, until the receiver takes it."""
    client = crash_stack.client()
    temporal_client = await Client.connect(own_temporal.address)
    with (
        WebhookReceiver(fail_first=2) as receiver,
        subscribed(crash_stack, receiver.url, ["thread.run.completed"]),
    ):
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        model.enqueue(Reply(text="Done."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "completed"
        await asyncio.wait_for(temporal_client.get_workflow_handle(run.id).result(), 10)
        await asyncio.to_thread(receiver.wait, 1)  # the first attempt failed
        crash_stack.kill_workers()
        await asyncio.sleep(1.0)
        crash_stack.start_worker()
        await asyncio.to_thread(receiver.wait, 3, 60)
        history = await temporal_client.get_workflow_handle(run.id).fetch_history()
        (delivery_id,) = delivery_ids(history)
        delivered = temporal_client.get_workflow_handle(delivery_id).result()
        assert await asyncio.wait_for(delivered, 60) is True
        statuses = [status for _, _, status in receiver.received]
        assert statuses[-1] == 200 and statuses.count(200) == 1, statuses
        assert len({headers["Webhook-Id"] for headers, _, _ in receiver.received}) == 1
        assert len({body for _, body, _ in receiver.received}) == 1

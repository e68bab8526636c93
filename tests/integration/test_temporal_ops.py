"""Operating runs through Temporal: finding them by search attribute, starting them from other
services and from a caller's own workflow (as a child), and completion webhooks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import openai
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.worker import Worker

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from assistants.trigger import MessageInput, RunRequest, start_run
from assistants.webhooks import verify
from tests.conftest import wait_for_status
from tests.support.caller_workflow import SupportTicketWorkflow
from tests.support.messages import text_of
from tests.support.stack import Stack
from tests.support.webhook_receiver import WebhookReceiver, delivery_ids, subscribed
from workflows.search_attributes import RUN_STATUS

LOOKUP: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


async def _listed(client: Client, query: str, expected: int) -> list[Any]:
    """Visibility is eventually consistent: poll the list until it has `expected` entries."""
    deadline = time.monotonic() + 20
    while True:
        found = [w async for w in client.list_workflows(query)]
        if len(found) == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def _status_attribute(client: Client, run_id: str, status: str) -> str | None:
    deadline = time.monotonic() + 20
    while True:
        description = await client.get_workflow_handle(run_id).describe()
        value = description.typed_search_attributes.get(RUN_STATUS)
        if value == status or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_runs_are_found_by_each_search_attribute(
    stack: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = stack.client()
    model_name = f"gpt-search-{uuid.uuid4().hex[:6]}"
    assistant = client.beta.assistants.create(model=model_name, tools=[LOOKUP])
    other = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello."))
    done = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]), Reply(text="Found."))
    waiting = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id
    )
    assert (done.status, waiting.status) == ("completed", "requires_action")
    model.enqueue(Reply(text="Other."))
    unrelated = client.beta.threads.runs.create_and_poll(
        thread_id=client.beta.threads.create().id, assistant_id=other.id
    )

    temporal_client = await Client.connect(temporal.address)
    both = {done.id, waiting.id}
    for query in (
        f'ThreadId = "{thread.id}"',
        f'AssistantId = "{assistant.id}"',
        f'Model = "{model_name}"',
        f'ProjectId = "proj_default" AND AssistantId = "{assistant.id}"',
    ):
        found = await _listed(temporal_client, query, 2)
        assert {w.id for w in found} == both, query
        assert unrelated.id not in {w.id for w in found}
    in_wait = await _listed(
        temporal_client, f'RunStatus = "requires_action" AND ThreadId = "{thread.id}"', 1
    )
    assert [w.id for w in in_wait] == [waiting.id]
    assert await _status_attribute(temporal_client, done.id, "completed") == "completed"

    # The status attribute tracks the run.
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
    client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "x"}],
    )
    assert await _status_attribute(temporal_client, waiting.id, "completed") == "completed"
    completed = await _listed(
        temporal_client, f'RunStatus = "completed" AND ThreadId = "{thread.id}"', 2
    )
    assert {w.id for w in completed} == both

    # The workflow summary names assistant and thread (ids only).
    description = await temporal_client.get_workflow_handle(done.id).describe()
    summary = await description.static_summary()
    assert summary == f"run of assistant {assistant.id} on thread {thread.id}"


async def test_a_callers_workflow_runs_the_assistant_as_a_child(
    stack: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
    model.enqueue(Reply(text="Restart the router."))
    temporal_client = await Client.connect(temporal.address)
    caller_queue = f"caller-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=caller_queue, workflows=[SupportTicketWorkflow]):
        result = await temporal_client.execute_workflow(
            SupportTicketWorkflow.run,
            [assistant.id, stack.task_queue, "My internet is down"],
            id=f"ticket-{uuid.uuid4().hex[:8]}",
            task_queue=caller_queue,
            execution_timeout=timedelta(seconds=60),
        )
    assert result.status == "completed"
    assert result.messages == ["Restart the router."]
    assert result.usage is not None and result.usage.total_tokens > 0

    # Over HTTP it looks like any other run.
    runs = client.beta.threads.runs.list(thread_id=result.thread_id).data
    assert [r.id for r in runs] == [result.run_id]
    run = runs[0]
    assert run.status == "completed" and run.assistant_id == assistant.id
    assert run.metadata == {"ticket": "T-1"} and run.instructions == "Be brief."
    messages = client.beta.threads.messages.list(thread_id=result.thread_id, order="asc").data
    assert [(m.role, text_of(m)) for m in messages] == [
        ("user", "My internet is down"),
        ("assistant", "Restart the router."),
    ]
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=result.thread_id).data
    assert [s.type for s in steps] == ["message_creation"]
    sent = model.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}


async def test_a_service_starts_a_run_on_an_existing_thread(
    stack: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "First"}])
    model.enqueue(Reply(text="Second answer."))
    temporal_client = await Client.connect(temporal.address)
    handle = await start_run(
        temporal_client,
        RunRequest(
            project_id="default",
            assistant_id=assistant.id,
            thread_id=thread.id,
            messages=[MessageInput("user", "Second")],
        ),
        task_queue=stack.task_queue,
    )
    result = await handle.result()
    assert (result.status, result.thread_id, result.messages) == (
        "completed",
        thread.id,
        ["Second answer."],
    )
    texts = [m["content"] for m in model.requests[0]["messages"]]
    assert texts == ["First", "Second"]

    # Bad requests fail the workflow with the API's message, and record nothing.
    bad = await start_run(
        temporal_client,
        RunRequest(project_id="default", assistant_id="asst_missing", thread_id=thread.id),
        task_queue=stack.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as error:
        await bad.result()
    assert "No assistant found with id 'asst_missing'." in str(error.value.cause)
    description = await bad.describe()
    assert description.status == WorkflowExecutionStatus.FAILED
    assert len(client.beta.threads.runs.list(thread_id=thread.id).data) == 1


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(fail_first=1) as r:
        yield r


def test_webhooks_are_signed_and_redelivered(
    stack: Stack, model: ScriptedModel, receiver: WebhookReceiver
) -> None:
    client = stack.client()
    with stack.http() as http:
        created = http.post(
            "/webhooks",
            json={
                "url": receiver.url,
                "events": ["thread.run.completed", "thread.run.requires_action"],
            },
        ).json()
    receiver.secret = created["secret"]
    try:
        assistant = client.beta.assistants.create(model="gpt-4o", tools=[LOOKUP])
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Look"}])
        model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]), Reply(text="Done."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "requires_action"
        # The first delivery fails (500) and is retried by its activity.
        receiver.wait(2)
        first, second = receiver.received[:2]
        assert (first[2], second[2]) == (500, 200)
        assert first[0]["Webhook-Id"] == second[0]["Webhook-Id"]  # same delivery, redelivered
        assert first[1] == second[1]
        event = json.loads(second[1])
        assert event["type"] == "thread.run.requires_action"
        assert event["data"]["id"] == run.id and event["data"]["status"] == "requires_action"
        assert verify(receiver.secret, second[0], second[1])
        assert not verify("whsec_wrong", second[0], second[1])

        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        done = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "1"}],
        )
        assert done.status == "completed"
        receiver.wait(3)
        headers, body, status = receiver.received[2]
        completed = json.loads(body)
        assert status == 200 and completed["type"] == "thread.run.completed"
        assert completed["data"]["status"] == "completed" and completed["data"]["usage"]
        assert completed["id"] != event["id"]
        assert verify(receiver.secret, headers, body)
    finally:
        with stack.http() as http:
            http.delete(f"/webhooks/{created['id']}")


async def test_a_runs_workflow_closes_without_waiting_for_its_webhook_deliveries(
    stack: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    """A receiver that is down delays its delivery, not the run's workflow: a caller awaiting
    the run's result (a platform team's own workflow) gets it as soon as the run ends, while
    the delivery, a workflow of its own, retries until the receiver is back."""
    client = stack.client()
    temporal_client = await Client.connect(temporal.address)
    with (
        WebhookReceiver(fail_first=3) as receiver,  # retried after 1, 2 and 4 s
        subscribed(stack, receiver.url, ["thread.run.completed"]),
    ):
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        model.enqueue(Reply(text="Done."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "completed"
        handle = temporal_client.get_workflow_handle(run.id)
        result = await asyncio.wait_for(handle.result(), 5)
        assert result["status"] == "completed"
        (delivery_id,) = delivery_ids(await handle.fetch_history())
        assert delivery_id.startswith(f"{run.id}-webhook-evt_")
        delivery = temporal_client.get_workflow_handle(delivery_id)
        # The run's workflow closed while its delivery was still failing.
        assert (await delivery.describe()).status == WorkflowExecutionStatus.RUNNING
        assert 200 not in [status for _, _, status in receiver.received]
        assert await asyncio.wait_for(delivery.result(), 30) is True
        assert [status for _, _, status in receiver.received] == [500, 500, 500, 200]
        assert len({headers["Webhook-Id"] for headers, _, _ in receiver.received}) == 1
        event = json.loads(receiver.received[-1][1])
        assert event["type"] == "thread.run.completed" and event["data"]["id"] == run.id


def test_runs_of_other_projects_do_not_reach_a_webhook(
    stack: Stack, model: ScriptedModel, receiver: WebhookReceiver
) -> None:
    other_key = stack.cli("keys", "create", "--project", f"other-{uuid.uuid4().hex[:6]}").strip()
    with stack.http() as http:
        hook = http.post("/webhooks", json={"url": receiver.url}).json()
    try:
        other = stack.client(api_key=other_key)
        assistant = other.beta.assistants.create(model="gpt-4o")
        thread = other.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        model.enqueue(Reply(text="Hi."))
        run = other.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "completed"
        time.sleep(1.0)
        assert receiver.received == []
    finally:
        with stack.http() as http:
            http.delete(f"/webhooks/{hook['id']}")


def test_cancelled_run_webhook_is_not_sent_for_unsubscribed_events(
    client: openai.OpenAI, stack: Stack, model: ScriptedModel, receiver: WebhookReceiver
) -> None:
    with subscribed(stack, receiver.url, ["thread.run.cancelled"]):
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        model.enqueue(Reply(text="fine"))
        done = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert done.status == "completed"
        model.enqueue(Reply(text="word " * 200, tokens_per_second=10))
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        wait_for_status(client, thread.id, run.id, {"in_progress"})
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        wait_for_status(client, thread.id, run.id, {"cancelled"})
        receiver.wait(2)  # the cancelled one, after one failed attempt
        events = [json.loads(body)["type"] for _, body, _ in receiver.received]
        assert events == ["thread.run.cancelled", "thread.run.cancelled"]
        assert json.loads(receiver.received[1][1])["data"]["id"] == run.id

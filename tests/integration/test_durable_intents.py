"""Intents written to the store first reach their workflow despite faults, with real processes:
cancels sent while Temporal is down or by an API that was SIGKILLed right after writing
`cancelling`, and tool outputs submitted while no worker polls (503 in bounded time; the retry
completes the run, once)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus

from assistants.config import Settings
from assistants.devserver import TemporalDevServer
from assistants.launcher import RunLauncher
from assistants.store import Store
from assistants.store.tables import run_events, runs
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack, wait_for_status
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

LOOKUP: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
OUTPUTS_TIMEOUT_S = 3.0
# The Python SDK's default `sticky_queue_schedule_to_start_timeout`: a workflow task waits this
# long for the worker that last ran the workflow before any worker may take it.
STICKY_TIMEOUT_S = 10.0
# "Within seconds": the sweeper re-sends each second; the rest is Temporal and the worker
# reconnecting after the restart, and the workflows finishing.
DELIVERY_DEADLINE_S = 20.0


@pytest.fixture(params=["sqlite", "postgres"])
def intents_stack(
    request: pytest.FixtureRequest,
    own_temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name=f"intents-{uuid.uuid4().hex[:8]}",  # a database of its own per test and variant
        temporal_address=own_temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_TOOL_OUTPUTS_TIMEOUT_S": str(OUTPUTS_TIMEOUT_S)},
    ) as stack:
        yield stack


def _outbox(stack: Stack, run_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    """Each run's status and `cancel_delivered_at`, read from the store itself (for when no API
    is there to ask)."""

    async def read() -> dict[str, tuple[str, int | None]]:
        store = Store.from_url(stack.database_url)
        query = select(runs.c.id, runs.c.status, runs.c.cancel_delivered_at).where(
            runs.c.id.in_(run_ids)
        )
        try:
            rows = await store.db.read(lambda conn: conn.execute(query).all())
        finally:
            await store.close()
        return {r.id: (r.status, r.cancel_delivered_at) for r in rows}

    return asyncio.run(read())


def _four_active_runs(client: openai.OpenAI, model: ScriptedModel) -> list[tuple[str, str]]:
    """Two runs waiting for tool outputs and two whose model is streaming slowly."""
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[LOOKUP])
    active = []
    for _ in range(2):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Look it up"}])
        model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "requires_action"
        active.append((thread.id, run.id))
    for _ in range(2):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Talk"}])
        model.enqueue(Reply(text="word " * 400, tokens_per_second=5))
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        wait_for_status(client, thread.id, run.id, {"in_progress"})
        active.append((thread.id, run.id))
    return active


def _assert_cancelled_and_unlocked(
    client: openai.OpenAI, model: ScriptedModel, active: list[tuple[str, str]], since: float
) -> float:
    """Wait for all four to be `cancelled` within `DELIVERY_DEADLINE_S` of `since` (when the
    fault ended); returns how long after `since` that was. Then a new run on each thread
    completes (the thread locks were released)."""
    for thread_id, run_id in active:
        remaining = DELIVERY_DEADLINE_S - (time.monotonic() - since)
        run = wait_for_status(client, thread_id, run_id, {"cancelled"}, timeout=remaining)
        assert run.cancelled_at is not None and run.expires_at is None
    took = time.monotonic() - since
    assistant = client.beta.assistants.create(model="gpt-4o")
    for thread_id, _ in active:
        model.enqueue(Reply(text="Again."))
        again = client.beta.threads.runs.create_and_poll(
            thread_id=thread_id, assistant_id=assistant.id
        )
        assert again.status == "completed"
    return took


def test_cancels_sent_while_temporal_is_down_arrive_when_it_is_back(
    intents_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    client = intents_stack.client()
    active = _four_active_runs(client, model)
    own_temporal.kill()
    try:
        # Concurrently: each answer waits for the start's bounded RPC timeout (seconds).
        with ThreadPoolExecutor(len(active)) as pool:
            answers = list(
                pool.map(
                    lambda run: client.beta.threads.runs.cancel(run[1], thread_id=run[0]), active
                )
            )
        assert [a.status for a in answers] == ["cancelling"] * len(active)
        time.sleep(1.5)  # the sweeper tries, and fails, meanwhile
        outbox = _outbox(intents_stack, [run_id for _, run_id in active])
        assert set(outbox.values()) == {("cancelling", None)}
    finally:
        own_temporal.start()
    back = time.monotonic()
    run_ids = [run_id for _, run_id in active]
    while not all(delivered for _, delivered in _outbox(intents_stack, run_ids).values()):
        assert time.monotonic() - back < DELIVERY_DEADLINE_S, "the cancels were not re-sent"
        time.sleep(0.1)
    print(f"all four cancels re-sent {time.monotonic() - back:.1f} s after Temporal was back")
    took = _assert_cancelled_and_unlocked(client, model, active, since=back)
    print(f"all four cancelled {took:.1f} s after Temporal was back")
    for thread_id, run_id in active[2:]:
        (message,) = client.beta.threads.messages.list(thread_id=thread_id, run_id=run_id).data
        assert message.role == "assistant" and message.status == "incomplete"
        assert message.incomplete_details is not None
        assert message.incomplete_details.reason == "run_cancelled"
        steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id)
        assert [s.status for s in steps] == ["cancelled"]


def test_cancels_written_by_an_api_that_died_are_sent_by_the_next_one(
    intents_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    """The API is SIGKILLed after it wrote `cancelling` and while its signal is still trying to
    reach Temporal (which is down, so the signal cannot get through first). Nothing in any
    process's memory survives: only the store knows about the cancels."""
    stack = intents_stack
    client = stack.client()
    active = _four_active_runs(client, model)
    run_ids = [run_id for _, run_id in active]
    own_temporal.kill()
    answers: list[int | str] = []

    def cancel(thread_id: str, run_id: str) -> None:
        with stack.http() as http:
            try:
                answers.append(http.post(f"/threads/{thread_id}/runs/{run_id}/cancel").status_code)
            except httpx.TransportError as error:
                answers.append(type(error).__name__)

    senders = [threading.Thread(target=cancel, args=run) for run in active]
    try:
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while {s for s, _ in _outbox(stack, run_ids).values()} != {"cancelling"}:
            assert time.monotonic() < deadline, "the cancels were not written"
            time.sleep(0.05)
        stack.kill_api()
        for sender in senders:
            sender.join(30)
        assert len(answers) == 4
    finally:
        own_temporal.start()
    # Temporal and the worker are back, and no API runs: nobody sends the cancels.
    time.sleep(3)
    assert set(_outbox(stack, run_ids).values()) == {("cancelling", None)}

    restarted = time.monotonic()
    stack.start_api()
    took = _assert_cancelled_and_unlocked(client, model, active, since=restarted)
    print(f"all four cancelled {took:.1f} s after the API was back")
    assert all(delivered for _, delivered in _outbox(stack, run_ids).values())


async def test_late_and_duplicate_cancel_signals_are_harmless(
    intents_stack: Stack, own_temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    """What a sweeper racing the route (or another API replica) can do: send a cancel that
    Temporal already has, or one for a run that has finished since. And a run whose workflow an
    operator terminated still ends `cancelled` when asked, unlocking its thread."""
    stack = intents_stack
    client = stack.client()
    settings = Settings(
        database_url=stack.database_url,
        temporal_address=own_temporal.address,
        task_queue=stack.task_queue,
    )
    store = Store.from_url(stack.database_url)
    temporal = await Client.connect(own_temporal.address)
    launcher = RunLauncher(settings, store, temporal)
    try:
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
        done = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert done.status == "completed"
        # A late cancel of a finished run changes nothing, in the store or in Temporal. The run
        # is `completed` as soon as its answer is stored, so the workflow may still be finishing
        # (notifying) when this cancel reaches it: it still ends `completed`.
        assert await launcher.cancel(done.model_dump(), "proj_default")
        handle = temporal.get_workflow_handle(done.id)
        result = await asyncio.wait_for(handle.result(), timeout=30)
        assert result["status"] == "completed"
        assert client.beta.threads.runs.retrieve(done.id, thread_id=thread.id) == done
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
        # And once the workflow has closed, a cancel is a no-op too.
        assert await launcher.cancel(done.model_dump(), "proj_default")
        assert client.beta.threads.runs.retrieve(done.id, thread_id=thread.id) == done

        thread_id, run_id, _ = _waiting_run(client, model)
        client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id).model_dump()
        for _ in range(2):  # duplicates, before or after the workflow took the first
            assert await launcher.cancel(run, "proj_default")
        wait_for_status(client, thread_id, run_id, {"cancelled"})
        names = (
            select(run_events.c.event)
            .where(run_events.c.run_id == run_id)
            .order_by(run_events.c.seq)
        )
        log = [r.event for r in await store.db.read(lambda conn: conn.execute(names).all())]
        assert log.count("thread.run.cancelling") == log.count("thread.run.cancelled") == 1
        assert log[-1] == "thread.run.cancelled"

        thread_id, run_id, _ = _waiting_run(client, model)
        await temporal.get_workflow_handle(run_id).terminate(reason="operator")
        assert client.beta.threads.runs.cancel(run_id, thread_id=thread_id).status == "cancelling"
        cancelled = wait_for_status(client, thread_id, run_id, {"cancelled"}, timeout=10)
        assert cancelled.cancelled_at is not None and cancelled.required_action is None
        client.beta.threads.messages.create(thread_id, role="user", content="Unlocked.")
    finally:
        await store.close()


def _waiting_run(client: openai.OpenAI, model: ScriptedModel) -> tuple[str, str, str]:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[LOOKUP])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Look it up"}])
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    return thread.id, run.id, run.required_action.submit_tool_outputs.tool_calls[0].id


@pytest.mark.parametrize(
    "temporal_restarts", [False, True], ids=["worker-returns", "temporal-restarts-too"]
)
def test_tool_outputs_while_no_worker_polls_answer_503_and_the_retry_completes_the_run(
    intents_stack: Stack,
    own_temporal: TemporalDevServer,
    model: ScriptedModel,
    temporal_restarts: bool,
) -> None:
    """No worker for longer than the update timeout. The first request answers 503 in bounded
    time. Temporal usually keeps its update and applies it when a worker is back (then the retry
    finds it applied); an admitted update is not durable, though, and a Temporal restart loses
    it (then the retry delivers the outputs). Either way the client's retry answers `queued`,
    the run completes, and the outputs were applied once, the first request's (first writer
    wins, although the retry sent others)."""
    stack = intents_stack
    client = stack.client()
    thread_id, run_id, call_id = _waiting_run(client, model)
    stack.kill_workers()

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run_id,
            thread_id=thread_id,
            tool_outputs=[{"tool_call_id": call_id, "output": "first"}],
        )
    took = time.monotonic() - started
    assert error.value.status_code == 503
    assert "retry" in error.value.message
    assert OUTPUTS_TIMEOUT_S <= took < OUTPUTS_TIMEOUT_S + 5, took
    if temporal_restarts:
        own_temporal.kill()
        own_temporal.start()
    # The worker stays away for longer than the update timeout, and than the sticky queue timeout:
    # until then Temporal keeps the run's next workflow task for the worker that died.
    time.sleep(max(0.0, STICKY_TIMEOUT_S + 1 - (time.monotonic() - started)))
    assert client.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status == (
        "requires_action"
    )

    model.enqueue(Reply(text="Found it."))
    stack.start_worker()
    if temporal_restarts:
        time.sleep(2)  # the update died with the server: nothing applies the outputs
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        assert run.status == "requires_action"
    else:  # Temporal delivers the update it kept, by itself (as a rule: not guaranteed)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
            if run.status != "requires_action":
                break
            time.sleep(0.1)
        print(
            f"the first request's update was applied by Temporal: {run.status != 'requires_action'}"
        )
    retried = client.beta.threads.runs.submit_tool_outputs(
        run_id=run_id,
        thread_id=thread_id,
        tool_outputs=[{"tool_call_id": call_id, "output": "second"}],
    )
    assert retried.status == "queued" and retried.required_action is None

    final = wait_for_status(client, thread_id, run_id, {"completed", "failed", "expired"}, 30)
    assert final.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=thread_id)
    assert [m.role for m in messages] == ["assistant", "user"]  # exactly one assistant message
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc")
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    tool_step = steps.data[0].step_details
    assert tool_step.type == "tool_calls"
    call = tool_step.tool_calls[0]
    assert call.type == "function" and call.function.output == "first"
    # The model saw the outputs once.
    answer_request = model.requests[-1]
    assert [m["role"] for m in answer_request["messages"]].count("tool") == 1
    # Answered: another submission for the same calls is refused, as on OpenAI.
    with pytest.raises(openai.BadRequestError) as late:
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run_id,
            thread_id=thread_id,
            tool_outputs=[{"tool_call_id": call_id, "output": "third"}],
        )
    assert late.value.message == (
        'Error code: 400 - Runs in status "completed" do not accept tool outputs.'
    )

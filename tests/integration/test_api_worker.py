"""`ASSISTANTS_API_WORKER=true`: the API process runs a Temporal worker on its own client, so runs
start eagerly. With no other worker anywhere, runs (polled, streamed, with a registered tool)
complete; their first workflow task is the one Temporal handed back in the start response."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.conftest import database_url
from tests.support.messages import text_of
from tests.support.stack import Stack


@pytest.fixture(scope="module", params=["sqlite"])
def api_only(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("api-worker")
    stack = Stack(
        name="api-worker",
        database_url=database_url(request.param, request, workdir, "api_worker"),
        temporal_address=temporal.address,
        model_base_url=model.base_url,
        workdir=workdir,
        overrides={"ASSISTANTS_API_WORKER": "true"},
    )
    stack.start_api()  # and no `durable-assistants worker`
    try:
        yield stack
    finally:
        stack.stop()


def test_runs_complete_on_the_api_hosted_worker(
    api_only: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = api_only.client()
    assistant = client.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
    model.enqueue(Reply(text="Polled answer."))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "One?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
    )
    assert run.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
    assert text_of(messages[-1]) == "Polled answer."

    model.enqueue(Reply(text="Streamed answer."))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Two?"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as s:
        s.until_done()
        streamed = s.get_final_run()
        final = s.get_final_messages()
    assert streamed.status == "completed"
    assert text_of(final[-1]) == "Streamed answer."

    # Eager start: the first workflow task was started by the start request itself (about 0.1
    # ms after the workflow's start event here), not by a poll that matching answered later
    # (the benchmarks see 2-5 ms of dispatch for that).
    history = asyncio.run(_history(temporal.address, streamed.id))
    kinds = [e.event_type for e in history]
    assert kinds[:3] == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    ]
    dispatch_ns = history[2].event_time.ToNanoseconds() - history[0].event_time.ToNanoseconds()
    assert dispatch_ns < 1_000_000


async def _history(address: str, run_id: str) -> list[HistoryEvent]:
    client = await Client.connect(address)
    history = await client.get_workflow_handle(run_id).fetch_history()
    return list(history.events)

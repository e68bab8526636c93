"""The model activity ends the run in the same commit as its answer, and a retry of that activity
(its worker died after the commit, before Temporal heard of it) reports the same result without
calling the model again or writing anything twice. On SQLite and PostgreSQL, against the scripted
model server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.model import ModelActivities
from activities.run_watch import RunWatch
from assistants.backends.openai_compatible import OpenAICompatibleBackend
from assistants.store import Store
from assistants.store.migrations import LATEST
from assistants.store.objects import text_content
from assistants.store.tables import messages, run_events, run_steps, threads
from assistants.testing.postgres import PostgresCluster
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.unit.test_store import run_fields
from workflows.shared import FinishResult, GenerateInput

_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"round_{next(_counter)}_{int(time.time())}")
    store = Store.from_url(url)
    assert await store.migrate() == [LATEST]
    yield store
    await store.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedModel]:
    with ScriptedModel() as model:
        yield model


async def _queued_run(store: Store, **fields: Any) -> tuple[str, str]:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create(
        "p", {}, None, [{"role": "user", "content": text_content("Hello?"), "metadata": {}}]
    )
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]) | fields, [])
    return run["id"], thread["id"]


async def _counts(store: Store, run_id: str) -> dict[str, int]:
    def read(conn: Any) -> dict[str, int]:
        def count(table: Any) -> int:
            return int(conn.scalar(select(func.count()).where(table.c.run_id == run_id)))

        return {"messages": count(messages), "steps": count(run_steps), "events": count(run_events)}

    return await store.db.read(read)


async def _attempt(activities: ModelActivities, call: GenerateInput, attempt: int) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(ActivityEnvironment.default_info(), attempt=attempt)
    return await env.run(activities.generate, call)


def _call(run_id: str) -> GenerateInput:
    return GenerateInput(run_id=run_id, step_id="step_a", message_id="msg_a", tool_step_id="step_b")


async def test_the_answer_ends_the_run_and_a_retry_repeats_nothing(
    store: Store, scripted: ScriptedModel
) -> None:
    scripted.enqueue(Reply(text="Hi there, friend."))
    activities = ModelActivities(store, OpenAICompatibleBackend(scripted.base_url, "k"))
    run_id, thread_id = await _queued_run(store)
    hook = await store.webhooks.create("p", "http://127.0.0.1:9/hook", ["thread.run.completed"])
    await store.webhooks.create("p", "http://127.0.0.1:9/other", ["thread.run.failed"])

    first = await _attempt(activities, _call(run_id), attempt=1)
    assert first.finish == "stop" and first.usage.completion_tokens > 0
    # …and reports the end with the webhooks to notify: the workflow calls no `finish_run`.
    assert first.ended == FinishResult(webhooks=[hook["id"]], status="completed")
    run = await store.runs.get("p", thread_id, run_id)
    # Ended by the answer's own commit: no workflow task has run `finish_run` yet.
    assert run["status"] == "completed" and run["completed_at"] is not None
    assert run["usage"]["completion_tokens"] == first.usage.completion_tokens
    lock = await store.db.read(
        lambda conn: conn.scalar(select(threads.c.active_run_id).where(threads.c.id == thread_id))
    )
    assert lock is None  # the thread takes a new run at once
    written = await _counts(store, run_id)
    log = await store.runs.event_snapshot(run_id, "thread.run.completed")
    assert log is not None and log[0]["status"] == "completed"

    retry = await _attempt(activities, _call(run_id), attempt=2)
    assert (retry.finish, retry.usage, retry.ended) == (first.finish, first.usage, first.ended)
    assert len(scripted.requests) == 1  # the model was not called again
    assert await _counts(store, run_id) == written


async def test_a_cut_answer_ends_the_run_incomplete(store: Store, scripted: ScriptedModel) -> None:
    scripted.enqueue(Reply(text="One two three four five six", finish_reason="length"))
    activities = ModelActivities(store, OpenAICompatibleBackend(scripted.base_url, "k"))
    run_id, thread_id = await _queued_run(store, max_completion_tokens=3)

    first = await _attempt(activities, _call(run_id), attempt=1)
    assert first.finish == "length"
    run = await store.runs.get("p", thread_id, run_id)
    assert run["status"] == "incomplete"
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert first.ended == FinishResult(status="incomplete")
    retry = await _attempt(activities, _call(run_id), attempt=2)
    assert retry.finish == "length" and len(scripted.requests) == 1


async def test_a_run_cancelled_during_the_answer_is_left_to_the_workflow(
    store: Store, scripted: ScriptedModel
) -> None:
    """The answer never overrides a cancellation the store already holds."""
    run_id, thread_id = await _queued_run(store)
    activities = ModelActivities(store, OpenAICompatibleBackend(scripted.base_url, "k"))
    await store.runs.request_cancel("p", thread_id, run_id)
    with pytest.raises(Exception, match="no longer in progress"):
        await _attempt(activities, _call(run_id), attempt=1)
    run = await store.runs.get("p", thread_id, run_id)
    assert run["status"] == "cancelling" and scripted.requests == []


async def test_a_local_round_rerun_after_requires_action_reports_its_stored_calls(
    store: Store, scripted: ScriptedModel
) -> None:
    """As a local activity, the round and `require_action` run in one workflow task: a worker
    that dies before Temporal records that task leaves the run in `requires_action`, and the
    round runs again (attempt 1 on the next worker). It reports the calls it stored, and the
    model is not called again."""
    weather = {
        "type": "function",
        "function": {"name": "get_temperature", "parameters": {"type": "object"}},
    }
    scripted.enqueue(Reply(tool_calls=[ToolCallSpec("get_temperature", '{"city": "Oslo"}')]))
    activities = ModelActivities(store, OpenAICompatibleBackend(scripted.base_url, "k"))
    run_id, thread_id = await _queued_run(store, tools=[weather])
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)

    first = await env.run(activities.generate, _call(run_id))
    assert first.finish == "tool_calls"
    (ref,) = first.tool_calls
    assert ref.name == "get_temperature" and ref.policy is None
    assert await store.tool_calls.require_action(run_id, "step_b", [ref.call_id])
    written = await _counts(store, run_id)

    again = await env.run(activities.generate, _call(run_id))
    assert again == first
    assert len(scripted.requests) == 1
    assert await _counts(store, run_id) == written
    run = await store.runs.get("p", thread_id, run_id)
    assert run["status"] == "requires_action"


async def test_a_local_round_rerun_after_a_later_round_ended_the_run_reports_its_calls(
    store: Store, scripted: ScriptedModel
) -> None:
    """With the calls run as local activities, a round, its calls and the next round (whose
    answer ends the run) run in one workflow task. A worker that dies before Temporal records
    it leaves the run `completed`, and the first round runs again on the next worker: it
    reports the calls it stored (not its text before them as the answer, not a stopped run),
    and the model is not called again."""
    weather = {
        "type": "function",
        "function": {"name": "get_temperature", "parameters": {"type": "object"}},
    }
    scripted.enqueue(
        Reply(text="Let me check.", tool_calls=[ToolCallSpec("get_temperature", "{}")]),
        Reply(text="It is 4 degrees in Oslo."),
    )
    activities = ModelActivities(store, OpenAICompatibleBackend(scripted.base_url, "k"))
    run_id, thread_id = await _queued_run(store, tools=[weather])
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)

    first = await env.run(activities.generate, _call(run_id))
    assert first.finish == "tool_calls"
    (ref,) = first.tool_calls
    await store.tool_calls.record_output(run_id, "step_b", ref.call_id, "4")
    second_call = GenerateInput(
        run_id=run_id,
        step_id="step_c",
        message_id="msg_c",
        tool_step_id="step_d",
        round_index=1,
        completes_step_id="step_b",
    )
    answer = await env.run(activities.generate, second_call)
    assert answer.finish == "stop" and answer.ended is not None
    written = await _counts(store, run_id)

    again = await env.run(activities.generate, _call(run_id))
    assert again == first
    assert await env.run(activities.generate, second_call) == answer
    assert len(scripted.requests) == 2
    assert await _counts(store, run_id) == written
    run = await store.runs.get("p", thread_id, run_id)
    assert run["status"] == "completed"


async def test_one_watch_reads_the_status_of_every_watched_run_in_one_query(store: Store) -> None:
    """The worker's run watch (activities/run_watch.py): however many rounds wait, one read per
    interval; a run that leaves `in_progress` (or no longer exists) releases only its waiters."""
    reads: list[int] = []

    async def statuses(ids: Collection[str]) -> dict[str, str]:
        reads.append(len(ids))
        return await store.runs.statuses(ids)

    runs = [await _queued_run(store) for _ in range(3)]
    for run_id, _ in runs:
        await store.runs.start_round(run_id, "step_a", "msg_a")
    watch = RunWatch(statuses, interval_s=0.05)
    waiters = [asyncio.create_task(watch.ended(run_id)) for run_id, _ in runs]
    waiters.append(asyncio.create_task(watch.ended(runs[0][0])))  # two rounds of one run
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waiters)
    assert reads and set(reads) == {3}  # one query for the three runs, each time

    cancelled_id, cancelled_thread = runs[0]
    await store.runs.request_cancel("p", cancelled_thread, cancelled_id)
    await asyncio.wait_for(asyncio.gather(waiters[0], waiters[3]), 5)
    await asyncio.sleep(0.15)
    assert not waiters[1].done() and not waiters[2].done()
    assert reads[-1] == 2

    await asyncio.wait_for(watch.ended("run_deleted_meanwhile"), 5)
    waiters[1].cancel()
    waiters[2].cancel()  # a round that finished: it stops waiting
    for waiter in waiters[1:3]:
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert watch.watched == 0
    await asyncio.sleep(0.15)
    settled = len(reads)
    await asyncio.sleep(0.15)
    assert len(reads) == settled  # nothing watched, nothing read


async def test_statuses_reads_more_runs_than_one_statement_binds(store: Store) -> None:
    run_id, _ = await _queued_run(store)
    ids = [f"run_missing_{i}" for i in range(1200)] + [run_id]
    assert await store.runs.statuses(ids) == {run_id: "queued"}


async def test_a_local_round_stops_when_its_run_is_cancelled(
    store: Store, scripted: ScriptedModel
) -> None:
    """A cancel signal reaches a local activity's workflow only at its next workflow task: the
    round notices the store's `cancelling` itself, before the model has answered."""
    scripted.enqueue(Reply(text="too late", ttft=30))
    activities = ModelActivities(
        store, OpenAICompatibleBackend(scripted.base_url, "k"), watch_interval_s=0.05
    )
    run_id, thread_id = await _queued_run(store)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=True)
    round_ = asyncio.create_task(env.run(activities.generate, _call(run_id)))
    await asyncio.sleep(0.3)  # the round is waiting for the model's first token
    assert len(scripted.requests) == 1 and not round_.done()
    await store.runs.request_cancel("p", thread_id, run_id)
    started = time.monotonic()
    with pytest.raises(Exception, match="no longer in progress"):
        await round_
    assert time.monotonic() - started < 5
    assert (await _counts(store, run_id))["messages"] == 0

"""The store on SQLite and on PostgreSQL: migrations, the thread lock, idempotent transitions and
the event log's ordering and idempotency."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest
from assistants.store import Store
from assistants.store.events import Batch, append, read
from assistants.store.migrations import LATEST
from assistants.store.prepared import select_one
from assistants.store.runs import RunEnd
from assistants.store.tables import run_steps
from assistants.testing.postgres import PostgresCluster

_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"unit_{next(_counter)}_{int(time.time())}")
    store = Store.from_url(url)
    assert await store.migrate() == [LATEST]
    yield store
    await store.close()


def run_fields(assistant_id: str) -> dict[str, object]:
    now = int(time.time())
    return {
        "assistant_id": assistant_id,
        "created_at": now,
        "expires_at": now + 600,
        "model": "m",
        "instructions": "",
        "additional_instructions": None,
        "tools": [],
        "metadata": {},
        "temperature": None,
        "top_p": None,
        "max_prompt_tokens": None,
        "max_completion_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "response_format": None,
        "tool_choice": None,
        "parallel_tool_calls": True,
    }


async def test_migrations_are_idempotent(store: Store) -> None:
    assert await store.migrate() == []


async def test_thread_lock_and_release(store: Store) -> None:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    with pytest.raises(InvalidRequest, match="already has an active run"):
        await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    with pytest.raises(InvalidRequest, match="Can't add messages"):
        await store.threads.create_message(
            "p", thread["id"], {"role": "user", "content": [], "metadata": {}}
        )
    first = await store.runs.finish(
        run["id"], "failed", last_error={"code": "server_error", "message": "x"}
    )
    again = await store.runs.finish(run["id"], "completed")  # a late writer changes nothing
    assert first["status"] == again["status"] == "failed"
    assert again["expires_at"] is None and again["failed_at"] is not None
    await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])


async def test_event_log_is_ordered_and_idempotent(store: Store) -> None:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    assert (await store.runs.start_round(run["id"], "step_1", "msg_x")).status == "in_progress"
    # retried: no new event
    assert (await store.runs.start_round(run["id"], "step_1", "msg_x")).status == "in_progress"
    await store.runs.begin_message(run["id"], "step_1", "msg_1")
    await store.runs.begin_message(run["id"], "step_1", "msg_1")
    first = await store.db.write(
        lambda conn: append(conn, run["id"], "delta:msg_1:0", "thread.message.delta", {"n": 1})
    )
    again = await store.db.write(
        lambda conn: append(conn, run["id"], "delta:msg_1:0", "thread.message.delta", {"n": 2})
    )
    assert first is not None and again is None
    await store.runs.complete_message(
        run["id"],
        "step_1",
        "msg_1",
        "Hello",
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        truncated=False,
    )
    await store.runs.finish(run["id"], "completed")
    await store.runs.finish(run["id"], "completed")
    events = await store.db.read(lambda conn: read(conn, run["id"]))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    completed = json.loads(events[8].data)
    assert completed["content"][0]["text"]["value"] == "Hello"
    assert json.loads(events[-1].data)["status"] == "completed"


async def test_sqlite_creates_its_directory(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'fresh' / 'data' / 'assistants.db'}")
    try:
        assert await store.migrate() == [LATEST]
        assert (tmp_path / "fresh" / "data" / "assistants.db").exists()
    finally:
        await store.close()


async def test_a_commits_events_are_appended_together_in_order(store: Store) -> None:
    """The answer's commit appends the message's end, the step's and the run's in one batch;
    retried, it appends nothing; a batch skips keys already logged or repeated within it."""
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    await store.runs.start_round(run["id"], "step_1", "msg_1")
    await store.runs.begin_message(run["id"], "step_1", "msg_1", "Hel")
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    for _ in range(2):  # the activity retried after its commit
        await store.runs.complete_message(
            run["id"], "step_1", "msg_1", "Hello", usage, truncated=False, end=RunEnd("completed")
        )

    def batch_with_repeats(conn: Connection) -> list[int]:
        batch = Batch(run["id"])
        batch.add("run:terminal", "thread.run.completed", {"dup": "logged"})
        batch.add("extra:1", "thread.message.delta", {"n": 1})
        batch.add("extra:1", "thread.message.delta", {"n": 2})
        return batch.flush(conn)

    seqs = await store.db.write(batch_with_repeats)
    events = await store.db.read(lambda conn: read(conn, run["id"]))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events][-5:] == [
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
        "thread.message.delta",
    ]
    assert seqs == [events[-1].seq] and json.loads(events[-1].data) == {"n": 1}
    assert json.loads(events[-2].data)["status"] == "completed"


async def test_ending_a_run_closes_what_it_left_open_in_one_batch(store: Store) -> None:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    await store.runs.start_round(run["id"], "step_1", "msg_1")
    await store.runs.begin_message(run["id"], "step_1", "msg_1")
    error = {"code": "server_error", "message": "boom"}
    await store.runs.finish(run["id"], "failed", last_error=error)
    events = await store.db.read(lambda conn: read(conn, run["id"]))
    assert [e.event for e in events][-3:] == [
        "thread.message.incomplete",
        "thread.run.step.failed",
        "thread.run.failed",
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_the_next_round_completes_the_tool_step_in_its_first_commit(store: Store) -> None:
    """The round after a tool round the worker answered completes that step in the commit that
    starts it (once, and also when the run is already `cancelling`: the outputs are all in)."""
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    for cancel in (False, True):
        thread = await store.threads.create("p", {}, None, [])
        run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
        rid, step = run["id"], f"step_tools_{int(cancel)}"
        await store.runs.start_round(rid, f"r0{step}", f"msg_0{step}")
        assert await store.tool_calls.begin_step(rid, step)
        calls = [{"id": "call_1", "name": "get_weather", "arguments": "{}"}]
        assert await store.tool_calls.store_calls(rid, step, calls, {}) is not None
        await store.tool_calls.record_output(rid, step, "call_1", "21")
        if cancel:
            await store.runs.request_cancel("p", thread["id"], rid)
        for _ in range(2):  # the activity retried after its commit
            start = await store.runs.start_round(rid, f"r1{step}", f"msg_1{step}", completes=step)
            assert start.status == ("cancelling" if cancel else "in_progress")
        events = await store.db.read(functools.partial(read, run_id=rid))
        completed = [e for e in events if e.event == "thread.run.step.completed"]
        assert len(completed) == 1
        assert json.loads(completed[0].data)["id"] == step
        assert json.loads(completed[0].data)["status"] == "completed"
        row = await store.db.read(functools.partial(select_one, table=run_steps, object_id=step))
        assert row.status == "completed"

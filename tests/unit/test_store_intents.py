"""The store's half of durable intents, on SQLite and PostgreSQL: the cancel outbox, and tool
output submissions that survive a failed request (retries answer success, first writer wins,
a second submission after a success is still refused)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assistants.errors import InvalidRequest
from assistants.store import Store
from assistants.store.migrations import LATEST
from assistants.store.tool_calls import submission_id
from assistants.testing.postgres import PostgresCluster
from tests.unit.test_store import run_fields

_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"intents_{next(_counter)}_{int(time.time())}")
    store = Store.from_url(url)
    assert await store.migrate() == [LATEST]
    yield store
    await store.close()


async def _run(store: Store) -> dict[str, Any]:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    return await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])


async def _waiting(store: Store, step_id: str, call_ids: list[str]) -> dict[str, Any]:
    """A run in `requires_action` for `call_ids`, on the tool step `step_id`."""
    run = await _run(store)
    assert (await store.runs.start_round(run["id"], "r0", "msg_x")).status == "in_progress"
    assert await store.tool_calls.begin_step(run["id"], step_id)
    calls = [{"id": c, "name": "f", "arguments": "{}"} for c in call_ids]
    await store.tool_calls.store_calls(run["id"], step_id, calls, {})
    assert await store.tool_calls.require_action(run["id"], step_id, call_ids)
    return run


def _outputs(call_ids: list[str], value: str) -> list[dict[str, Any]]:
    return [{"tool_call_id": c, "output": value} for c in call_ids]


async def test_a_cancel_stays_in_the_outbox_until_it_is_delivered(store: Store) -> None:
    run = await _run(store)
    await store.runs.request_cancel("p", run["thread_id"], run["id"])
    assert [r.id for r in await store.runs.undelivered_cancels(-1)] == [run["id"]]
    # Not before the request that wrote it has had its own go at sending it.
    assert await store.runs.undelivered_cancels(60) == []
    # A run cancelled before it started is the outbox's, not the start sweeper's.
    assert await store.runs.stale_queued(-1) == []
    # Asking again is answered from the store and does not reset anything.
    again = await store.runs.request_cancel("p", run["thread_id"], run["id"])
    assert again["status"] == "cancelling"
    await store.runs.cancel_delivered(run["id"])
    assert await store.runs.undelivered_cancels(-1) == []
    await store.runs.finish(run["id"], "cancelled")
    assert await store.runs.undelivered_cancels(-1) == []


async def test_a_failed_submission_retried_answers_success_once_applied(store: Store) -> None:
    run = await _waiting(store, "step_a", ["call_1", "call_2"])
    rid, tid = run["id"], run["thread_id"]
    first = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_1", "call_2"], "x"))
    assert first.submission_id == submission_id("step_a") and not first.applied
    # The request failed (503). Its retry, with other outputs, stages nothing new: first
    # writer wins, and the update it sends is the first one's.
    retry = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_2", "call_1"], "y"))
    assert retry.submission_id == first.submission_id and not retry.applied
    assert retry.call_ids == ["call_1", "call_2"]
    # A partial submission is not a retry of it.
    with pytest.raises(InvalidRequest, match="Expected tool outputs for call_ids"):
        await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_1"], "z"))

    # Temporal applied the first request's update later (a worker came back).
    assert await store.tool_calls.apply_submission(rid, "step_a", first.submission_id)
    assert await store.tool_calls.apply_submission(rid, "step_a", first.submission_id)  # retried
    step = await store.runs.get_step("p", tid, rid, "step_a")
    assert [c["function"]["output"] for c in step["step_details"]["tool_calls"]] == ["x", "x"]
    await store.runs.start_round(rid, "r1", "msg_x")  # the run moved on

    late = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_1", "call_2"], "y"))
    assert late.applied and late.step_id == "step_a"
    answer = await store.tool_calls.acknowledge(late, rid)
    assert answer["status"] == "queued" and answer["required_action"] is None
    # Answered: a further submission is refused, as on OpenAI.
    with pytest.raises(InvalidRequest, match='Runs in status "in_progress"'):
        await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_1", "call_2"], "x"))


async def test_an_unanswered_applied_submission_outlives_the_run_for_a_while(
    store: Store,
) -> None:
    run = await _waiting(store, "step_b", ["call_3"])
    rid, tid = run["id"], run["thread_id"]
    staged = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_3"], "x"))
    assert await store.tool_calls.apply_submission(rid, "step_b", staged.submission_id)
    await store.runs.finish(rid, "completed")
    retry = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_3"], "x"))
    assert retry.applied
    assert await store.tool_calls.forget_unacknowledged(3600) == 0
    await asyncio.sleep(1.1)
    assert await store.tool_calls.forget_unacknowledged(0) == 1
    with pytest.raises(InvalidRequest, match='Runs in status "completed"'):
        await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_3"], "x"))


async def test_staged_outputs_that_never_applied_go_with_the_run(store: Store) -> None:
    run = await _waiting(store, "step_c", ["call_4"])
    rid, tid = run["id"], run["thread_id"]
    staged = await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_4"], "x"))
    await store.runs.request_cancel("p", tid, rid)
    assert not await store.tool_calls.apply_submission(rid, "step_c", staged.submission_id)
    await store.runs.finish(rid, "cancelled")
    assert not await store.tool_calls.apply_submission(rid, "step_c", staged.submission_id)
    with pytest.raises(InvalidRequest, match='Runs in status "cancelled"'):
        await store.tool_calls.stage_outputs("p", tid, rid, _outputs(["call_4"], "x"))

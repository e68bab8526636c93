"""The SDK's poll helpers against a held poll (assistants/streaming/held_poll.py): they get the
run the moment it settles, not a poll interval later; plain reads answer at once.

The API and the worker are separate processes here, so what wakes a held poll is the change
feed (SQLite's poller, PostgreSQL's LISTEN), not an in-process commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack
from tests.support.stack import Stack

# Longer than any run here: without holding, the SDK would read once, then sleep this long.
SLOW_POLLING_MS = 8000
# Longer still: a poll answered only when its hold ran out would take this long.
HOLD_MS = 20_000
WEATHER: Any = {
    "type": "function",
    "function": {"name": "lookup_forecast", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def held_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="held-poll",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_POLL_HOLD_MS": str(HOLD_MS)},
    ) as stack:
        yield stack


@pytest.fixture
def client(held_stack: Stack) -> openai.OpenAI:
    return held_stack.client()


def test_create_and_poll_returns_when_the_run_completes(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello there, slowly.", ttft=1.0))
    started = time.monotonic()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=SLOW_POLLING_MS
    )
    assert run.status == "completed"
    # Woken by the run's end: not after its hold (HOLD_MS), nor a poll interval later.
    assert time.monotonic() - started < 5


def test_poll_returns_when_the_run_needs_action(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec(name="lookup_forecast", arguments="{}")], ttft=0.4)
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    started = time.monotonic()
    run = client.beta.threads.runs.poll(
        run.id, thread_id=thread.id, poll_interval_ms=SLOW_POLLING_MS
    )
    assert run.status == "requires_action"
    assert time.monotonic() - started < 5
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_a_plain_read_answers_at_once_and_a_held_one_within_its_bound(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Late.", ttft=8))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    runs = client.beta.threads.runs

    started = time.monotonic()
    plain = runs.retrieve(run.id, thread_id=thread.id)
    plain_s = time.monotonic() - started

    started = time.monotonic()
    held = runs.retrieve(
        run.id,
        thread_id=thread.id,
        extra_headers={"X-Stainless-Poll-Helper": "true"},
        timeout=3.0,  # the SDK says so in X-Stainless-Read-Timeout: held half of it at most
    )
    held_s = time.monotonic() - started

    assert {plain.status, held.status} <= {"queued", "in_progress"}
    assert plain_s < 1.0
    assert 1.5 <= held_s < 3.0
    runs.cancel(run.id, thread_id=thread.id)

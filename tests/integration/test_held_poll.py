"""The SDK's poll helpers against a held poll (assistants/streaming/held_poll.py): they get the
run the moment it settles, not a poll interval later; plain reads answer at once.

The API and the worker are separate processes here, so what wakes a held poll is the change
feed (SQLite's poller, PostgreSQL's LISTEN), not an in-process commit.
"""

from __future__ import annotations

import time
from typing import Any

import openai

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec

# Longer than any run here: without holding, the SDK would read once, then sleep this long.
SLOW_POLLING_MS = 8000
WEATHER: Any = {
    "type": "function",
    "function": {"name": "lookup_forecast", "parameters": {"type": "object", "properties": {}}},
}


def test_create_and_poll_returns_when_the_run_completes(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello there, slowly.", ttft=0.4))
    started = time.monotonic()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=SLOW_POLLING_MS
    )
    assert run.status == "completed"
    assert time.monotonic() - started < 4  # not after SLOW_POLLING_MS


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
    assert time.monotonic() - started < 4
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_a_plain_read_answers_at_once_and_a_held_one_within_its_bound(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Late.", ttft=6))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    runs = client.beta.threads.runs

    started = time.monotonic()
    plain = runs.retrieve(run.id, thread_id=thread.id)
    plain_s = time.monotonic() - started

    started = time.monotonic()
    held = runs.retrieve(
        run.id, thread_id=thread.id, extra_headers={"X-Stainless-Poll-Helper": "true"}
    )
    held_s = time.monotonic() - started

    started = time.monotonic()
    short = runs.retrieve(
        run.id,
        thread_id=thread.id,
        extra_headers={"X-Stainless-Poll-Helper": "true"},
        timeout=0.8,  # the SDK says so in X-Stainless-Read-Timeout: held half of it at most
    )
    short_s = time.monotonic() - started

    assert {plain.status, held.status, short.status} <= {"queued", "in_progress"}
    assert plain_s < 0.9
    assert held_s >= 1.0  # ASSISTANTS_POLL_HOLD_MS, 1 s by default
    assert 0.4 <= short_s < 0.8
    runs.cancel(run.id, thread_id=thread.id)

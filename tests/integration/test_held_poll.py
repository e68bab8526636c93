"""The SDK's poll helpers against a held poll (assistants/streaming/held_poll.py): they get the
run the moment it settles, not a poll interval later; plain reads answer at once. Likewise the
vector-store pollers (`files.upload_and_poll`, `file_batches.upload_and_poll`), whose held
reads re-read the file or batch until its ingestion ends.

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
from assistants.testing.scripted_model import EmbeddingReply, Reply, ScriptedModel, ToolCallSpec
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
        overrides={
            "ASSISTANTS_POLL_HOLD_MS": str(HOLD_MS),
            # Embeddings from the scripted endpoint, so a test can make an ingestion slow.
            "ASSISTANTS_EMBEDDINGS_BASE_URL": model.base_url,
            "ASSISTANTS_EMBEDDINGS_MODEL": "scripted-embedding",
            "ASSISTANTS_EMBEDDINGS_DIMENSIONS": "64",
        },
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


def test_upload_and_poll_returns_when_the_file_is_indexed(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    store = client.vector_stores.create(name="held")
    model.enqueue_embeddings(EmbeddingReply(delay=1.0))  # the file's chunks embed for 1 s
    started = time.monotonic()
    indexed = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id,
        file=("penguins.txt", b"Emperor penguins breed in the Antarctic winter."),
        poll_interval_ms=SLOW_POLLING_MS,
    )
    elapsed = time.monotonic() - started
    assert indexed.status == "completed", indexed.last_error
    # Not a poll interval (8 s) after the first read found it in progress, nor after the hold.
    assert 1.0 <= elapsed < 5


def test_a_plain_file_read_answers_at_once(client: openai.OpenAI, model: ScriptedModel) -> None:
    store = client.vector_stores.create(name="plain")
    uploaded = client.files.create(file=("notes.txt", b"Adelie penguins."), purpose="assistants")
    model.enqueue_embeddings(EmbeddingReply(delay=3.0))
    client.vector_stores.files.create(vector_store_id=store.id, file_id=uploaded.id)
    started = time.monotonic()
    plain = client.vector_stores.files.retrieve(uploaded.id, vector_store_id=store.id)
    assert plain.status == "in_progress" and time.monotonic() - started < 1.0
    final = client.vector_stores.files.poll(uploaded.id, vector_store_id=store.id)
    assert final.status == "completed"


def test_batch_upload_and_poll_returns_when_every_file_is_indexed(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    store = client.vector_stores.create(name="held-batch")
    model.enqueue_embeddings(EmbeddingReply(delay=1.0), EmbeddingReply(delay=1.0))
    started = time.monotonic()
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id,
        files=[
            ("a.txt", b"Gentoo penguins are fast swimmers."),
            ("b.txt", b"King penguins raise one chick at a time."),
        ],
        poll_interval_ms=SLOW_POLLING_MS,
    )
    elapsed = time.monotonic() - started
    assert batch.status == "completed" and batch.file_counts.completed == 2
    assert 1.0 <= elapsed < 6

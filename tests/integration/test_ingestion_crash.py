"""Ingestion survives crashes and cancels, with real processes, on SQLite and PostgreSQL.

The stack embeds through the scripted model server's `/v1/embeddings` (the configured-endpoint
path), slowed down per request so a test can act in the middle of an ingestion: SIGKILL the
worker while a 200-chunk file is half indexed (after a restart the file completes with exactly
its chunks: none missing, none twice, and the retry resumed from its checkpoint instead of
starting over); cancel a batch half way (cancelled files keep no chunk, whatever the in-flight
work does next); and an embedding endpoint answering 429 with `Retry-After` (honoured) or a
non-retryable 400 (the file ends `failed`, `server_error`). And attachments (and expiry timers)
requested while Temporal is down are started by the API's sweeper once it is back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from assistants.devserver import TemporalDevServer
from assistants.retrieval import Chunk, chunk_document, parse_document
from assistants.testing.scripted_model import EmbeddingReply, ScriptedModel
from tests.conftest import started_stack
from tests.support import documents
from tests.support.stack import Stack
from tests.support.vector_stores import DbProbe, counts, upload, wait_file
from workflows.ingestion_shared import batch_workflow_id, ingest_workflow_id

pytestmark = pytest.mark.slow

GROUP = 8  # chunks per embedding request and per checkpoint on this stack
DIMS = 64
SLOW = EmbeddingReply(delay=0.25)
STATIC_100: Any = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def crash_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ingest-crash",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={
            "ASSISTANTS_EMBEDDINGS_BASE_URL": model.base_url,
            "ASSISTANTS_EMBEDDINGS_MODEL": "scripted-embedding",
            "ASSISTANTS_EMBEDDINGS_DIMENSIONS": str(DIMS),
            "ASSISTANTS_EMBEDDINGS_BATCH_INPUTS": str(GROUP),
            "ASSISTANTS_INGESTION_CHECKPOINT_CHUNKS": str(GROUP),
            "ASSISTANTS_INGESTION_HEARTBEAT_TIMEOUT_S": "2",
            "ASSISTANTS_INGESTION_CONCURRENCY": "2",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def probe(crash_stack: Stack) -> Iterator[DbProbe]:
    found = DbProbe(crash_stack.database_url)
    yield found
    found.close()


def _chunks(data: bytes, name: str) -> list[Chunk]:
    return chunk_document(parse_document(data, name), 100, 0)


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def test_worker_sigkill_mid_ingestion_resumes_without_duplicates(
    crash_stack: Stack, probe: DbProbe, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = crash_stack.client()
    data = "\n\n".join(documents.filler_sentences(1700, seed=5)).encode()
    chunks = _chunks(data, "big.txt")
    n = len(chunks)
    assert n >= 200
    groups = math.ceil(n / GROUP)
    model.enqueue_embeddings(*[SLOW] * (3 * groups))  # every request takes a quarter second
    file_obj = upload(client, "big.txt", data)
    store = client.vector_stores.create(name="crash")
    client.vector_stores.files.create(
        vector_store_id=store.id, file_id=file_obj.id, chunking_strategy=STATIC_100
    )

    # Mid-way: more than half of the chunks written, not all.
    _wait(lambda: probe.chunks(store.id, file_obj.id) >= 15 * GROUP, "no progress")
    crash_stack.kill_workers()
    written = probe.chunk_positions(store.id, file_obj.id)
    assert 15 * GROUP <= len(written) < n
    assert written == list(range(len(written)))  # groups are written in order, once
    current = client.vector_stores.files.retrieve(file_obj.id, vector_store_id=store.id)
    assert current.status == "in_progress"
    assert client.vector_stores.retrieve(store.id).status == "in_progress"
    requests_before = len(model.embedding_requests)

    crash_stack.start_worker()
    done = wait_file(client, store.id, file_obj.id, {"completed", "failed"}, timeout=120)
    assert done.status == "completed", done.last_error
    assert probe.chunk_positions(store.id, file_obj.id) == list(range(n))  # exact, no duplicates
    assert done.usage_bytes == sum(len(c.text.encode()) for c in chunks) + n * DIMS * 4
    assert counts(client.vector_stores.retrieve(store.id)) == {
        "in_progress": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
    }
    # The retry resumed from its checkpoint: it embedded the groups after it (give or take the
    # few written after the last heartbeat Temporal recorded), not the whole file again.
    retried = len(model.embedding_requests) - requests_before
    assert retried < groups - 4, (retried, groups)

    # Findable in the Temporal UI by store and file, with an id-only summary.
    temporal_client = await Client.connect(temporal.address)
    workflow_id = ingest_workflow_id(store.id, file_obj.id, 1)
    query = f"VectorStoreId = '{store.id}' AND FileId = '{file_obj.id}'"
    deadline = time.monotonic() + 20
    found: list[Any] = []
    while not found and time.monotonic() < deadline:
        found = [w async for w in temporal_client.list_workflows(query)]
        await asyncio.sleep(0.2)
    assert [w.id for w in found] == [workflow_id]
    handle = temporal_client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert await description.static_summary() == f"ingest {file_obj.id} into {store.id}"


async def test_batch_cancelled_midway_leaves_no_chunks_of_cancelled_files(
    crash_stack: Stack, probe: DbProbe, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = crash_stack.client()
    store = client.vector_stores.create(name="cancel")
    made: dict[str, list[Chunk]] = {}
    for i in range(6):
        data = "\n\n".join(documents.filler_sentences(320, seed=100 + i)).encode()
        made[upload(client, f"doc{i}.txt", data).id] = _chunks(data, f"doc{i}.txt")
    model.enqueue_embeddings(*[SLOW] * 200)
    batch = client.vector_stores.file_batches.create(
        vector_store_id=store.id, file_ids=list(made), chunking_strategy=STATIC_100
    )
    assert batch.status == "in_progress" and batch.file_counts.in_progress == 6

    def some_done_some_midway() -> bool:
        done = client.vector_stores.file_batches.list_files(
            batch.id, vector_store_id=store.id, filter="completed"
        ).data
        partial = [f for f in made if 0 < probe.chunks(store.id, f) < len(made[f])]
        return bool(done) and bool(partial)

    _wait(some_done_some_midway, "the batch never got half way")
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    # One transaction: every file still in progress is cancelled at once.
    assert cancelled.file_counts.in_progress == 0 and cancelled.file_counts.total == 6
    assert cancelled.file_counts.cancelled >= 1 and cancelled.file_counts.completed >= 1
    statuses = {
        f.id: f.status
        for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    }
    assert set(statuses.values()) <= {"completed", "cancelled"}
    gone = [f for f, status in statuses.items() if status == "cancelled"]
    assert all(probe.chunks(store.id, f) == 0 for f in gone)

    # The in-flight ingestions get every chance to write more; they must not.
    await asyncio.sleep(3)
    again = {
        f.id: f.status
        for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    }
    assert again == statuses
    for file_id, status in statuses.items():
        positions = probe.chunk_positions(store.id, file_id)
        assert positions == (list(range(len(made[file_id]))) if status == "completed" else [])
    final = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert final.status == "cancelled" and counts(final) == counts(cancelled)
    assert client.vector_stores.retrieve(store.id).status == "completed"

    # The cancel reached the workflows: the batch's, and a child that was indexing.
    temporal_client = await Client.connect(temporal.address)
    batch_handle = temporal_client.get_workflow_handle(batch_workflow_id(batch.id))
    deadline = time.monotonic() + 20
    while (await batch_handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "the batch workflow kept running"
        await asyncio.sleep(0.2)
    assert (await batch_handle.describe()).status == WorkflowExecutionStatus.CANCELED
    # Every child of a cancelled file has stopped: cancelled by the batch's cancel, or stopped
    # on its own when its next guarded write found the file no longer in progress.
    stopped = 0
    for file_id in gone:
        handle = temporal_client.get_workflow_handle(ingest_workflow_id(store.id, file_id, 1))
        try:
            closed = (await handle.describe()).status
        except RPCError:
            continue  # never started: it was still waiting for a slot
        assert closed in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.COMPLETED)
        stopped += 1
    assert stopped >= 1  # at least one was indexing when the cancel came


async def test_deletes_mid_ingestion_stop_it_and_leave_no_chunks(
    crash_stack: Stack, probe: DbProbe, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = crash_stack.client()
    data = "\n\n".join(documents.filler_sentences(600, seed=21)).encode()
    n = len(_chunks(data, "long.txt"))
    model.enqueue_embeddings(*[SLOW] * 200)
    kept_file = upload(client, "long.txt", data)
    doomed_file = upload(client, "long-too.txt", data)
    store = client.vector_stores.create(name="file deleted")
    doomed_store = client.vector_stores.create(name="store deleted", file_ids=[kept_file.id])
    client.vector_stores.files.create(
        vector_store_id=store.id, file_id=doomed_file.id, chunking_strategy=STATIC_100
    )
    _wait(
        lambda: (
            0 < probe.chunks(store.id, doomed_file.id) < n and probe.chunks(doomed_store.id) > 0
        ),
        "no progress",
    )
    assert client.files.delete(doomed_file.id).deleted  # the file, out of every store
    assert client.vector_stores.delete(doomed_store.id).deleted  # the store, with its files
    assert probe.chunks(store.id) == 0 and probe.chunks(doomed_store.id) == 0
    await asyncio.sleep(3)  # the ingestions under way get every chance to write; they must not
    assert probe.chunks(store.id) == 0 and probe.chunks(doomed_store.id) == 0
    assert counts(client.vector_stores.retrieve(store.id))["total"] == 0
    assert client.files.retrieve(kept_file.id).id == kept_file.id

    # Both ingestions stopped: they found their rows gone (or were cancelled).
    temporal_client = await Client.connect(temporal.address)
    for workflow_id in (
        ingest_workflow_id(store.id, doomed_file.id, 1),
        ingest_workflow_id(doomed_store.id, kept_file.id, 1),
    ):
        handle = temporal_client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + 20
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            assert time.monotonic() < deadline, f"{workflow_id} kept running"
            await asyncio.sleep(0.2)


def test_embedding_rate_limits_honour_retry_after_and_bad_requests_fail(
    crash_stack: Stack, probe: DbProbe, model: ScriptedModel
) -> None:
    client = crash_stack.client()
    store = client.vector_stores.create(name="limits")
    model.enqueue_embeddings(
        EmbeddingReply(status=429, retry_after=2.0), EmbeddingReply(status=503)
    )
    start = time.monotonic()
    ok = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("limited.txt", b"Rate limited, then fine.\n")
    )
    elapsed = time.monotonic() - start
    assert ok.status == "completed", ok.last_error
    # The policy alone would have retried after 0.2 s; the endpoint asked for 2 s.
    assert elapsed >= 2.0
    assert len(model.embedding_requests) == 3
    assert probe.chunks(store.id, ok.id) == 1

    model.enqueue_embeddings(EmbeddingReply(status=400, error_message="input too long"))
    failed = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("rejected.txt", b"The endpoint refuses this one.\n")
    )
    assert failed.status == "failed"
    assert failed.last_error is not None and failed.last_error.code == "server_error"
    assert "400" in failed.last_error.message
    assert len(model.embedding_requests) == 4  # a 400 is not retried
    assert probe.chunks(store.id, failed.id) == 0


@pytest.fixture(params=["sqlite", "postgres"])
def outage_stack(
    request: pytest.FixtureRequest,
    own_temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ingest-outage",
        temporal_address=own_temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_VECTOR_STORE_DAY_S": "2"},
    ) as stack:
        yield stack


def test_ingestion_requested_while_temporal_is_down_starts_when_it_is_back(
    outage_stack: Stack, own_temporal: TemporalDevServer
) -> None:
    client = outage_stack.client()
    lone = upload(client, "lone.txt", b"Attached while Temporal was down.\n")
    batched = upload(client, "batched.txt", b"Batched while Temporal was down.\n")
    store = client.vector_stores.create(name="outage")
    own_temporal.kill()
    try:
        # Concurrently: each answer waits for its workflow start's bounded RPC timeout.
        with ThreadPoolExecutor(3) as pool:
            attaching = pool.submit(
                client.vector_stores.files.create, vector_store_id=store.id, file_id=lone.id
            )
            batching = pool.submit(
                client.vector_stores.file_batches.create,
                vector_store_id=store.id,
                file_ids=[batched.id],
            )
            # A store whose expiry timer cannot be started yet (a "day" is 2 s on this stack).
            creating = pool.submit(
                client.vector_stores.create,
                name="expiring",
                expires_after={"anchor": "last_active_at", "days": 1},
            )
            attached, batch, expiring = attaching.result(), batching.result(), creating.result()
        # Safe in the store, not yet a workflow.
        assert attached.status == "in_progress" and batch.file_counts.in_progress == 1
        time.sleep(1.0)
        assert client.vector_stores.retrieve(store.id).file_counts.in_progress == 2
    finally:
        own_temporal.start()
    # The API's sweeper starts what it committed but could not start.
    done = wait_file(client, store.id, lone.id, {"completed", "failed"}, timeout=90)
    assert done.status == "completed"
    finished = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
    assert counts(finished) == {
        "in_progress": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
    }
    probe = DbProbe(outage_stack.database_url)
    try:
        assert probe.chunks(store.id) == 2
    finally:
        probe.close()
    deadline = time.monotonic() + 60
    while client.vector_stores.retrieve(expiring.id).status != "expired":
        assert time.monotonic() < deadline, "the expiry timer was never started"
        time.sleep(0.2)

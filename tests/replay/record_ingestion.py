"""Record the ingestion replay histories: `.venv/bin/python -m tests.replay.record_ingestion`.

The ingestion workflows live long (a store's expiry timer sleeps for days), so a deploy meets
many of them in flight, like runs. This records one history per scenario of
`INGESTION_SCENARIOS` into `tests/replay/ingestion_histories/`, from the real system: a Temporal
dev server and `api` + `worker` processes on SQLite in a temporary directory, with a 2-second
"day" so the expiry timer fires. `tests/unit/test_replay_ingestion.py` replays them.

Re-record only on purpose (see README.md in this directory).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
from temporalio.client import Client

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import ScriptedModel
from tests.replay import INGESTION_HISTORIES_DIR, INGESTION_SCENARIOS
from tests.support import documents
from tests.support.stack import Stack
from workflows.ingestion_shared import batch_workflow_id, expiry_workflow_id, ingest_workflow_id


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def ingest_file(client: openai.OpenAI) -> str:
    data = "\n\n".join(documents.filler_sentences(150)).encode()
    store = client.vector_stores.create(name="replay")
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("notes.txt", data)
    )
    assert done.status == "completed", done.last_error
    return ingest_workflow_id(store.id, done.id, 1)


def ingest_unsupported(client: openai.OpenAI) -> str:
    store = client.vector_stores.create(name="replay")
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("blob.bin", bytes(range(256)) * 16)
    )
    assert done.status == "failed", done
    return ingest_workflow_id(store.id, done.id, 1)


def file_batch(client: openai.OpenAI) -> str:
    store = client.vector_stores.create(name="replay")
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id,
        files=[("a.md", b"# A\n\nAlpha.\n"), ("b.pdf", documents.make_pdf(["Page one", "Two"]))],
    )
    assert batch.file_counts.completed == 2, batch.file_counts
    return batch_workflow_id(batch.id)


def expiry(client: openai.OpenAI) -> str:
    store = client.vector_stores.create(
        name="replay",
        expires_after={"anchor": "last_active_at", "days": 1},  # two seconds here
    )
    client.vector_stores.update(store.id, name="renamed")
    _wait(lambda: client.vector_stores.retrieve(store.id).status == "expired", "no expiry")
    return expiry_workflow_id(store.id)


RECORDERS: dict[str, Callable[[openai.OpenAI], str]] = {
    "ingest_file": ingest_file,
    "ingest_unsupported": ingest_unsupported,
    "file_batch": file_batch,
    "expiry": expiry,
}
assert tuple(RECORDERS) == INGESTION_SCENARIOS, "INGESTION_SCENARIOS and RECORDERS disagree"


async def _save(address: str, name: str, workflow_id: str) -> None:
    client = await Client.connect(address)
    handle = client.get_workflow_handle(workflow_id)
    result: Any = await asyncio.wait_for(handle.result(), 60)
    history = await handle.fetch_history()
    (INGESTION_HISTORIES_DIR / f"{name}.json").write_text(history.to_json() + "\n")
    print(f"{name:<20} {result!s:<14} {len(history.events):>3} events  {workflow_id}", flush=True)


def main() -> None:
    INGESTION_HISTORIES_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="replay-ingestion-"))
    try:
        with ExitStack() as cleanup:
            temporal = cleanup.enter_context(
                TemporalDevServer(db_file=workdir / "temporal.db", log_file=workdir / "t.log")
            )
            model = cleanup.enter_context(ScriptedModel())
            stack = Stack(
                name="replay-ingestion",
                database_url=f"sqlite:///{workdir / 'assistants.db'}",
                temporal_address=temporal.address,
                model_base_url=model.base_url,
                workdir=workdir / "stack",
                overrides={"ASSISTANTS_VECTOR_STORE_DAY_S": "2"},
            ).start()
            cleanup.callback(stack.stop)
            client = stack.client()
            for name, recorder in RECORDERS.items():
                asyncio.run(_save(temporal.address, name, recorder(client)))
    except BaseException:
        print(f"recording failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

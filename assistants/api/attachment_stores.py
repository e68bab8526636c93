"""Message `attachments` for file_search: the files go into the thread's vector store.

As on the hosted API, a message whose attachment names the `file_search` tool adds that file to
the thread's store, and a thread without one gets a store (expiring 7 days after it was last
active) recorded in its `tool_resources`. Runs on the thread then search it (and wait, bounded,
for its files still being ingested: activities/model.py).

This runs right after the message is written and before any run it belongs to is started, in a
transaction of its own that locks the thread (two concurrent messages cannot create two stores).
A file already in the store is not ingested again; an expired thread store is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from assistants.api.context import Services
from assistants.api.file_search_resources import THREAD_STORE_EXPIRY
from assistants.requests import MessageCreate
from assistants.retrieval import embedder_from_settings, static_chunking_strategy
from assistants.store.tables import threads, vector_store_files, vector_stores
from assistants.store.vector_store_files import FileSpec, IngestionPlan, attach_files
from assistants.store.vector_stores import Embedding, create_store_tx, expiry_seconds


def search_attachments(messages: Iterable[MessageCreate | None]) -> list[str]:
    """The file ids attached for file_search, in order, once each."""
    ids = [
        attachment.file_id
        for message in messages
        if message is not None
        for attachment in message.attachments or []
        if any(tool.type == "file_search" for tool in attachment.tools)
    ]
    return list(dict.fromkeys(ids))


async def add_to_thread_store(
    svc: Services, project_id: str, thread_id: str, file_ids: list[str]
) -> None:
    if not file_ids:
        return
    embedder = embedder_from_settings(svc.settings)
    settings = svc.settings

    def tx(conn: Connection) -> IngestionPlan | None:
        thread = conn.execute(
            select(threads.c.tool_resources)
            .where(threads.c.id == thread_id, threads.c.project_id == project_id)
            .with_for_update()
        ).one()
        resources: dict[str, Any] = dict(thread.tool_resources or {})
        current = ((resources.get("file_search") or {}).get("vector_store_ids") or [None])[0]
        store = None
        if current is not None:
            store = conn.execute(
                select(vector_stores.c.id, vector_stores.c.expired).where(
                    vector_stores.c.id == current, vector_stores.c.project_id == project_id
                )
            ).first()
        chunking = static_chunking_strategy(None, param="attachments")
        specs = [FileSpec(f, chunking, {}) for f in file_ids]
        if store is not None and not store.expired:
            attached = set(
                conn.scalars(
                    select(vector_store_files.c.file_id).where(
                        vector_store_files.c.vector_store_id == store.id,
                        vector_store_files.c.file_id.in_(file_ids),
                    )
                )
            )
            fresh = [s for s in specs if s.file_id not in attached]
            if not fresh:
                return None
            return attach_files(conn, project_id, store.id, fresh, batch_id=None)
        created, plan = create_store_tx(
            conn,
            project_id,
            name=None,
            metadata={},
            expires_after=THREAD_STORE_EXPIRY,
            embedding=Embedding(embedder.model, embedder.dimensions),
            files=specs,
            expires_after_s=expiry_seconds(THREAD_STORE_EXPIRY, settings.vector_store_day_s),
            param="attachments[{index}].file_id",
        )
        resources["file_search"] = {"vector_store_ids": [created["id"]]}
        conn.execute(
            update(threads)
            .where(threads.c.id == thread_id, threads.c.project_id == project_id)
            .values(tool_resources=resources)
        )
        return plan

    plan = await svc.store.db.write(tx)
    if plan is not None:
        await svc.ingestion.launch(plan)

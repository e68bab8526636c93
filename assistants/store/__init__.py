"""The store: the source of truth for every object the API serves.

Routes read and write through it; activities write run state through it. `Store` bundles the
per-resource repositories around one `Database`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from assistants.store import objects
from assistants.store.assistants import AssistantStore, get_assistant
from assistants.store.chunks import ChunkStore
from assistants.store.db import Database
from assistants.store.files import FileStore
from assistants.store.ingestion import IngestionStore
from assistants.store.migrations import migrate
from assistants.store.projects import ProjectStore
from assistants.store.runs import RunStore, create_run
from assistants.store.tables import runs
from assistants.store.threads import PrepareResources, ThreadStore, create_thread, get_thread
from assistants.store.tool_calls import ToolCallStore
from assistants.store.vector_store_files import VectorStoreFileStore
from assistants.store.vector_stores import VectorStoreStore
from assistants.store.webhooks import WebhookStore


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.projects = ProjectStore(db)
        self.assistants = AssistantStore(db)
        self.threads = ThreadStore(db)
        self.runs = RunStore(db)
        self.tool_calls = ToolCallStore(db)
        self.webhooks = WebhookStore(db)
        self.chunks = ChunkStore(db)
        self.files = FileStore(db)
        self.vector_stores = VectorStoreStore(db)
        self.vector_store_files = VectorStoreFileStore(db)
        self.ingestion = IngestionStore(db)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(Database(url))

    async def thread_and_assistant(
        self, project_id: str, thread_id: str, assistant_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What `POST /threads/{id}/runs` checks first, in one read: the thread (a 404 for it
        comes before the assistant's), then the assistant (a 404 naming `assistant_id`)."""

        def tx(conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            thread = get_thread(conn, project_id, thread_id)
            return thread, get_assistant(conn, project_id, assistant_id, param="assistant_id")

        return await self.db.lookup(tx)

    async def create_thread_and_run(
        self,
        project_id: str,
        *,
        metadata: dict[str, str],
        tool_resources: dict[str, Any] | None,
        messages: list[dict[str, Any]],
        run_fields: dict[str, Any],
        prepare: PrepareResources | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`POST /threads/runs`: the thread, its messages and the run in one transaction.
        `prepare` turns the thread's `tool_resources` into what is stored, in the same
        transaction (it creates the vector store a `file_search.vector_stores` helper asks for)."""

        def tx(conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            resources = prepare(conn, tool_resources) if prepare else tool_resources
            thread = create_thread(conn, project_id, metadata, resources, messages)
            run = create_run(conn, project_id, thread["id"], run_fields, [], new_thread=thread)
            return thread, run

        return await self.db.write(tx)

    async def record_run(
        self,
        run_id: str,
        project_id: str,
        thread_id: str | None,
        messages: list[dict[str, Any]],
        run_fields: dict[str, Any],
    ) -> dict[str, Any]:
        """A run started through Temporal: its (new or existing) thread, messages and the run,
        in one transaction, under the run id the caller chose. Idempotent: a retried recording
        returns the run already there."""

        def tx(conn: Connection) -> dict[str, Any]:
            existing = conn.execute(select(runs).where(runs.c.id == run_id)).first()
            if existing is not None:
                return objects.run(existing)
            if thread_id is None:
                thread = create_thread(conn, project_id, {}, None, messages)
                return create_run(conn, project_id, thread["id"], run_fields, [], run_id=run_id)
            return create_run(conn, project_id, thread_id, run_fields, messages, run_id=run_id)

        return await self.db.write(tx)

    async def migrate(self) -> list[int]:
        return await migrate(self.db)

    async def close(self) -> None:
        await self.db.dispose()


__all__ = ["Database", "Store"]

"""The store: the source of truth for every object the API serves.

Routes read and write through it; activities write run state through it. `Store` bundles the
per-resource repositories around one `Database`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from assistants.store import objects
from assistants.store.assistants import AssistantStore
from assistants.store.db import Database
from assistants.store.migrations import migrate
from assistants.store.projects import ProjectStore
from assistants.store.runs import RunStore, create_run
from assistants.store.tables import runs
from assistants.store.threads import ThreadStore, create_thread
from assistants.store.tool_calls import ToolCallStore
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

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(Database(url))

    async def create_thread_and_run(
        self,
        project_id: str,
        *,
        metadata: dict[str, str],
        tool_resources: dict[str, Any] | None,
        messages: list[dict[str, Any]],
        run_fields: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`POST /threads/runs`: the thread, its messages and the run in one transaction."""

        def tx(conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
            thread = create_thread(conn, project_id, metadata, tool_resources, messages)
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

"""The store: the source of truth for every object the API serves.

Routes read and write through it; activities write run state through it. `Store` bundles the
per-resource repositories around one `Database`.
"""

from __future__ import annotations

from typing import Any

from assistants.store.assistants import AssistantStore
from assistants.store.db import Database
from assistants.store.migrations import migrate
from assistants.store.projects import ProjectStore
from assistants.store.runs import RunStore
from assistants.store.threads import ThreadStore


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.projects = ProjectStore(db)
        self.assistants = AssistantStore(db)
        self.threads = ThreadStore(db)
        self.runs = RunStore(db)

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
        async with self.db.write() as conn:
            thread = await self.threads.create(project_id, metadata, tool_resources, messages, conn)
            run = await self.runs.create(project_id, thread["id"], run_fields, [], conn)
        return thread, run

    async def migrate(self) -> list[int]:
        return await migrate(self.db)

    async def close(self) -> None:
        await self.db.dispose()


__all__ = ["Database", "Store"]

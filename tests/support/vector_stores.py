"""What the vector-store tests look at besides the API: the database itself (chunk rows, row
counts), read from a thread with its own event loop so the session's loop is left alone; and
the SDK calls they repeat."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import openai
from openai.types import FileObject
from openai.types.vector_store import VectorStore
from openai.types.vector_stores import VectorStoreFile
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from assistants.store.db import Database
from assistants.store.tables import metadata as schema
from assistants.store.tables import vector_store_chunks

T = TypeVar("T")


class DbProbe:
    """Reads of the stack's database (the truth behind the API)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._local = threading.local()

    def _run(self, fn: Callable[[Connection], T]) -> T:
        runner: asyncio.Runner | None = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = asyncio.Runner()
            self._local.db = Database(self._url)
        db: Database = self._local.db
        return runner.run(db.read(fn))

    def read(self, fn: Callable[[Connection], T]) -> T:
        return self._executor.submit(self._run, fn).result(timeout=60)

    def chunk_positions(self, vector_store_id: str, file_id: str | None = None) -> list[int]:
        """Positions of the chunk rows (all generations), sorted: duplicates would show."""
        c = vector_store_chunks.c
        query = select(c.position).where(c.vector_store_id == vector_store_id)
        if file_id is not None:
            query = query.where(c.file_id == file_id)
        return self.read(lambda conn: sorted(int(p) for p in conn.scalars(query)))

    def chunks(self, vector_store_id: str, file_id: str | None = None) -> int:
        return len(self.chunk_positions(vector_store_id, file_id))

    def table_counts(self) -> dict[str, int]:
        return self.read(
            lambda conn: {
                table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in schema.sorted_tables
            }
        )

    def close(self) -> None:
        def close() -> None:
            runner: asyncio.Runner | None = getattr(self._local, "runner", None)
            if runner is not None:
                runner.run(self._local.db.dispose())
                runner.close()

        self._executor.submit(close).result(timeout=30)
        self._executor.shutdown()


def upload(client: openai.OpenAI, name: str, data: bytes) -> FileObject:
    return client.files.create(file=(name, data), purpose="assistants")


def wait_store(
    client: openai.OpenAI, vector_store_id: str, *, timeout: float = 120.0
) -> VectorStore:
    """Poll the store until nothing is `in_progress` (as users are told to)."""
    deadline = time.monotonic() + timeout
    while True:
        store = client.vector_stores.retrieve(vector_store_id)
        if store.status != "in_progress":
            return store
        if time.monotonic() > deadline:
            raise TimeoutError(f"{vector_store_id} stayed in_progress: {store.file_counts}")
        time.sleep(0.1)


def wait_file(
    client: openai.OpenAI,
    vector_store_id: str,
    file_id: str,
    statuses: set[str],
    *,
    timeout: float = 120.0,
) -> VectorStoreFile:
    deadline = time.monotonic() + timeout
    while True:
        found = client.vector_stores.files.retrieve(file_id, vector_store_id=vector_store_id)
        if found.status in statuses:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{file_id} stayed {found.status}, wanted {statuses}")
        time.sleep(0.05)


def counts(store: Any) -> dict[str, int]:
    fc = store.file_counts
    return {
        "in_progress": fc.in_progress,
        "completed": fc.completed,
        "failed": fc.failed,
        "cancelled": fc.cancelled,
        "total": fc.total,
    }

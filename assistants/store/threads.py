"""Threads and their messages, including the thread lock check on message creation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store import objects
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.prepared import StoredRow, insert_rows, select_one, select_where
from assistants.store.tables import messages, run_events, run_steps, runs, threads

JSONDict = dict[str, Any]
# Turns a create request's `tool_resources` into the stored ones inside the creating transaction
# (a `file_search.vector_stores` helper becomes a new vector store's id).
PrepareResources = Callable[[Connection, JSONDict | None], JSONDict | None]


def insert_message(conn: Connection, project_id: str, thread_id: str, message: JSONDict) -> str:
    """Insert a user-supplied (or `additional_messages`) message; returns its id."""
    message_id = new_id("msg")
    now = int(time.time())
    insert_rows(
        conn,
        messages,
        [
            {
                "id": message_id,
                "project_id": project_id,
                "thread_id": thread_id,
                "created_at": now,
                "role": message["role"],
                "content": message["content"],
                "attachments": message.get("attachments") or [],
                "metadata": message.get("metadata") or {},
                "assistant_id": None,
                "run_id": None,
                "status": "completed",
                "completed_at": now,
            }
        ],
    )
    return message_id


def lock_thread_row(conn: Connection, project_id: str, thread_id: str) -> StoredRow:
    """Read the thread row, locking it on PostgreSQL (SQLite's IMMEDIATE transaction already
    holds the database write lock)."""
    row = select_where(conn, threads, {"id": thread_id, "project_id": project_id}, lock=True)
    if row is None:
        raise NotFound.object("thread", thread_id)
    return row


def get_thread(conn: Connection, project_id: str, thread_id: str) -> JSONDict:
    row = select_where(conn, threads, {"id": thread_id, "project_id": project_id})
    if row is None:
        raise NotFound.object("thread", thread_id)
    return objects.thread(row)


def require_thread(conn: Connection, project_id: str, thread_id: str) -> None:
    found = conn.scalar(
        select(threads.c.seq).where(threads.c.id == thread_id, threads.c.project_id == project_id)
    )
    if found is None:
        raise NotFound.object("thread", thread_id)


def create_thread(
    conn: Connection,
    project_id: str,
    metadata: dict[str, str],
    tool_resources: JSONDict | None,
    initial_messages: list[JSONDict],
) -> JSONDict:
    thread_id = new_id("thread")
    insert_rows(
        conn,
        threads,
        [
            {
                "id": thread_id,
                "project_id": project_id,
                "created_at": int(time.time()),
                "metadata": metadata,
                "tool_resources": tool_resources,
            }
        ],
    )
    for message in initial_messages:
        insert_message(conn, project_id, thread_id, message)
    return objects.thread(select_one(conn, threads, thread_id))


def _message_where(project_id: str, thread_id: str, message_id: str) -> Any:
    return (
        (messages.c.id == message_id)
        & (messages.c.thread_id == thread_id)
        & (messages.c.project_id == project_id)
    )


class ThreadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        project_id: str,
        metadata: dict[str, str],
        tool_resources: JSONDict | None,
        initial_messages: list[JSONDict],
        prepare: PrepareResources | None = None,
    ) -> JSONDict:
        """`prepare` turns `tool_resources` into what is stored, in the same transaction."""

        def tx(conn: Connection) -> JSONDict:
            resources = prepare(conn, tool_resources) if prepare else tool_resources
            return create_thread(conn, project_id, metadata, resources, initial_messages)

        return await self._db.write(tx)

    async def get(self, project_id: str, thread_id: str) -> JSONDict:
        return await self._db.lookup(lambda conn: get_thread(conn, project_id, thread_id))

    async def modify(self, project_id: str, thread_id: str, fields: JSONDict) -> JSONDict:
        where = (threads.c.id == thread_id) & (threads.c.project_id == project_id)

        def tx(conn: Connection) -> JSONDict:
            if fields:
                conn.execute(update(threads).where(where).values(**fields))
            row = conn.execute(select(threads).where(where)).first()
            if row is None:
                raise NotFound.object("thread", thread_id)
            return objects.thread(row)

        return await self._db.write(tx)

    async def delete(self, project_id: str, thread_id: str) -> JSONDict:
        def tx(conn: Connection) -> None:
            row = lock_thread_row(conn, project_id, thread_id)
            if row.active_run_id is not None:
                raise InvalidRequest(
                    f"Can't delete thread {thread_id} while a run {row.active_run_id} is active."
                )
            run_ids = select(runs.c.id).where(runs.c.thread_id == thread_id)
            conn.execute(delete(run_events).where(run_events.c.run_id.in_(run_ids)))
            conn.execute(delete(run_steps).where(run_steps.c.thread_id == thread_id))
            conn.execute(delete(runs).where(runs.c.thread_id == thread_id))
            conn.execute(delete(messages).where(messages.c.thread_id == thread_id))
            conn.execute(delete(threads).where(threads.c.id == thread_id))

        await self._db.write(tx)
        return objects.deleted("thread", thread_id)

    # --- messages ----------------------------------------------------------------------------

    async def create_message(self, project_id: str, thread_id: str, message: JSONDict) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            row = lock_thread_row(conn, project_id, thread_id)
            if row.active_run_id is not None:
                raise InvalidRequest(
                    f"Can't add messages to {thread_id} while a run {row.active_run_id} is active."
                )
            message_id = insert_message(conn, project_id, thread_id, message)
            return objects.message(
                conn.execute(select(messages).where(messages.c.id == message_id)).one()
            )

        return await self._db.write(tx)

    async def get_message(self, project_id: str, thread_id: str, message_id: str) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            require_thread(conn, project_id, thread_id)
            row = conn.execute(
                select(messages).where(_message_where(project_id, thread_id, message_id))
            ).first()
            if row is None:
                raise NotFound.object("message", message_id)
            return objects.message(row)

        return await self._db.lookup(tx)

    async def modify_message(
        self, project_id: str, thread_id: str, message_id: str, metadata: dict[str, str] | None
    ) -> JSONDict:
        where = _message_where(project_id, thread_id, message_id)

        def tx(conn: Connection) -> JSONDict:
            require_thread(conn, project_id, thread_id)
            if metadata is not None:
                conn.execute(update(messages).where(where).values(metadata=metadata))
            row = conn.execute(select(messages).where(where)).first()
            if row is None:
                raise NotFound.object("message", message_id)
            return objects.message(row)

        return await self._db.write(tx)

    async def delete_message(self, project_id: str, thread_id: str, message_id: str) -> JSONDict:
        def tx(conn: Connection) -> None:
            require_thread(conn, project_id, thread_id)
            result = conn.execute(
                delete(messages).where(_message_where(project_id, thread_id, message_id))
            )
            if result.rowcount == 0:
                raise NotFound.object("message", message_id)

        await self._db.write(tx)
        return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

    async def list_messages(
        self, project_id: str, thread_id: str, page: PageParams, run_id: str | None
    ) -> JSONDict:
        scope = (messages.c.thread_id == thread_id) & (messages.c.project_id == project_id)
        if run_id is not None:
            scope = scope & (messages.c.run_id == run_id)

        def tx(conn: Connection) -> JSONDict:
            require_thread(conn, project_id, thread_id)
            result = fetch_page(conn, messages, scope, page)
            return list_object([objects.message(r) for r in result.rows], result.has_more)

        return await self._db.lookup(tx)

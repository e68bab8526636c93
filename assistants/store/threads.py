"""Threads and their messages, including the thread lock check on message creation."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store import objects
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.tables import messages, run_events, run_steps, runs, threads

JSONDict = dict[str, Any]


async def insert_message(
    conn: AsyncConnection,
    project_id: str,
    thread_id: str,
    message: JSONDict,
    *,
    message_id: str | None = None,
) -> str:
    """Insert a user-supplied (or `additional_messages`) message; returns its id."""
    message_id = message_id or new_id("msg")
    now = int(time.time())
    await conn.execute(
        messages.insert().values(
            id=message_id,
            project_id=project_id,
            thread_id=thread_id,
            created_at=now,
            role=message["role"],
            content=message["content"],
            attachments=message.get("attachments") or [],
            metadata=message.get("metadata") or {},
            assistant_id=None,
            run_id=None,
            status="completed",
            completed_at=now,
        )
    )
    return message_id


async def lock_thread_row(conn: AsyncConnection, project_id: str, thread_id: str) -> Any:
    """Read the thread row, locking it on PostgreSQL (SQLite's IMMEDIATE transaction already
    holds the database write lock)."""
    row = (
        await conn.execute(
            select(threads)
            .where(threads.c.id == thread_id, threads.c.project_id == project_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound.object("thread", thread_id)
    return row


class ThreadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        project_id: str,
        metadata: dict[str, str],
        tool_resources: JSONDict | None,
        initial_messages: list[JSONDict],
        conn: AsyncConnection | None = None,
    ) -> JSONDict:
        if conn is None:
            async with self._db.write() as own:
                return await self.create(
                    project_id, metadata, tool_resources, initial_messages, own
                )
        thread_id = new_id("thread")
        await conn.execute(
            threads.insert().values(
                id=thread_id,
                project_id=project_id,
                created_at=int(time.time()),
                metadata=metadata,
                tool_resources=tool_resources,
            )
        )
        for message in initial_messages:
            await insert_message(conn, project_id, thread_id, message)
        row = (await conn.execute(select(threads).where(threads.c.id == thread_id))).one()
        return objects.thread(row)

    async def get(self, project_id: str, thread_id: str) -> JSONDict:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(threads).where(
                        threads.c.id == thread_id, threads.c.project_id == project_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound.object("thread", thread_id)
        return objects.thread(row)

    async def modify(self, project_id: str, thread_id: str, fields: JSONDict) -> JSONDict:
        where = (threads.c.id == thread_id) & (threads.c.project_id == project_id)
        async with self._db.write() as conn:
            if fields:
                await conn.execute(update(threads).where(where).values(**fields))
            row = (await conn.execute(select(threads).where(where))).first()
        if row is None:
            raise NotFound.object("thread", thread_id)
        return objects.thread(row)

    async def delete(self, project_id: str, thread_id: str) -> JSONDict:
        async with self._db.write() as conn:
            row = await lock_thread_row(conn, project_id, thread_id)
            if row.active_run_id is not None:
                raise InvalidRequest(
                    f"Can't delete thread {thread_id} while a run {row.active_run_id} is active."
                )
            run_ids = select(runs.c.id).where(runs.c.thread_id == thread_id)
            await conn.execute(delete(run_events).where(run_events.c.run_id.in_(run_ids)))
            await conn.execute(delete(run_steps).where(run_steps.c.thread_id == thread_id))
            await conn.execute(delete(runs).where(runs.c.thread_id == thread_id))
            await conn.execute(delete(messages).where(messages.c.thread_id == thread_id))
            await conn.execute(delete(threads).where(threads.c.id == thread_id))
        return objects.deleted("thread", thread_id)

    # --- messages ----------------------------------------------------------------------------

    async def create_message(self, project_id: str, thread_id: str, message: JSONDict) -> JSONDict:
        async with self._db.write() as conn:
            row = await lock_thread_row(conn, project_id, thread_id)
            if row.active_run_id is not None:
                raise InvalidRequest(
                    f"Can't add messages to {thread_id} while a run {row.active_run_id} is active."
                )
            message_id = await insert_message(conn, project_id, thread_id, message)
            created = (
                await conn.execute(select(messages).where(messages.c.id == message_id))
            ).one()
        return objects.message(created)

    def _message_where(self, project_id: str, thread_id: str, message_id: str) -> Any:
        return (
            (messages.c.id == message_id)
            & (messages.c.thread_id == thread_id)
            & (messages.c.project_id == project_id)
        )

    async def _require_thread(self, conn: AsyncConnection, project_id: str, thread_id: str) -> None:
        found = await conn.scalar(
            select(threads.c.seq).where(
                threads.c.id == thread_id, threads.c.project_id == project_id
            )
        )
        if found is None:
            raise NotFound.object("thread", thread_id)

    async def get_message(self, project_id: str, thread_id: str, message_id: str) -> JSONDict:
        async with self._db.read() as conn:
            await self._require_thread(conn, project_id, thread_id)
            row = (
                await conn.execute(
                    select(messages).where(self._message_where(project_id, thread_id, message_id))
                )
            ).first()
        if row is None:
            raise NotFound.object("message", message_id)
        return objects.message(row)

    async def modify_message(
        self, project_id: str, thread_id: str, message_id: str, metadata: dict[str, str] | None
    ) -> JSONDict:
        where = self._message_where(project_id, thread_id, message_id)
        async with self._db.write() as conn:
            await self._require_thread(conn, project_id, thread_id)
            if metadata is not None:
                await conn.execute(update(messages).where(where).values(metadata=metadata))
            row = (await conn.execute(select(messages).where(where))).first()
        if row is None:
            raise NotFound.object("message", message_id)
        return objects.message(row)

    async def delete_message(self, project_id: str, thread_id: str, message_id: str) -> JSONDict:
        async with self._db.write() as conn:
            await self._require_thread(conn, project_id, thread_id)
            result = await conn.execute(
                delete(messages).where(self._message_where(project_id, thread_id, message_id))
            )
        if result.rowcount == 0:
            raise NotFound.object("message", message_id)
        return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

    async def list_messages(
        self, project_id: str, thread_id: str, page: PageParams, run_id: str | None
    ) -> JSONDict:
        scope = (messages.c.thread_id == thread_id) & (messages.c.project_id == project_id)
        if run_id is not None:
            scope = scope & (messages.c.run_id == run_id)
        async with self._db.read() as conn:
            await self._require_thread(conn, project_id, thread_id)
            result = await fetch_page(conn, messages, scope, page)
        return list_object([objects.message(r) for r in result.rows], result.has_more)

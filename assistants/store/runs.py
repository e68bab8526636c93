"""Runs and run steps: creation under the thread lock, reads, and every state transition.

Each transition is one transaction that updates the row(s), appends the matching event(s) to the
run's event log and, on a terminal status, releases the thread lock. Transitions are conditional on
the current status, so they are idempotent (a retried activity changes nothing twice) and a late
writer can never resurrect a finished run.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store import events, objects
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.tables import messages, run_steps, runs, threads
from assistants.store.threads import insert_message, lock_thread_row

JSONDict = dict[str, Any]

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")

# How a terminal run status closes the steps and messages it left open.
_STEP_STATUS = {
    "completed": "completed",
    "incomplete": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}
_STEP_TIME_COLUMN = {
    "completed": "completed_at",
    "failed": "failed_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
}
_MESSAGE_REASON = {
    "incomplete": "max_tokens",
    "failed": "run_failed",
    "cancelled": "run_cancelled",
    "expired": "run_expired",
    "completed": "run_failed",
}


async def _run_row(conn: AsyncConnection, run_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(runs).where(runs.c.id == run_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound.object("run", run_id)
    return row


async def _run_event(
    conn: AsyncConnection, run_id: str, status: str, key: str | None = None
) -> JSONDict:
    run = objects.run(await _run_row(conn, run_id))
    await events.append(conn, run_id, key or f"run:{status}", f"thread.run.{status}", run)
    return run


class RunStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- API side ----------------------------------------------------------------------------

    async def create(
        self,
        project_id: str,
        thread_id: str,
        fields: JSONDict,
        additional_messages: list[JSONDict],
        conn: AsyncConnection | None = None,
    ) -> JSONDict:
        """Take the thread lock and insert the run as `queued`, with its first two events."""
        if conn is None:
            async with self._db.write() as own:
                return await self.create(project_id, thread_id, fields, additional_messages, own)
        thread = await lock_thread_row(conn, project_id, thread_id)
        if thread.active_run_id is not None:
            raise InvalidRequest(
                f"Thread {thread_id} already has an active run {thread.active_run_id}."
            )
        run_id = new_id("run")
        for message in additional_messages:
            await insert_message(conn, project_id, thread_id, message)
        await conn.execute(
            runs.insert().values(
                id=run_id,
                project_id=project_id,
                thread_id=thread_id,
                status="queued",
                event_seq=0,
                **fields,
            )
        )
        await conn.execute(
            update(threads).where(threads.c.id == thread_id).values(active_run_id=run_id)
        )
        run = objects.run(await _run_row(conn, run_id))
        await events.append(conn, run_id, "run:created", "thread.run.created", run)
        await events.append(conn, run_id, "run:queued", "thread.run.queued", run)
        return run

    async def _scoped_row(
        self, conn: AsyncConnection, project_id: str, thread_id: str, run_id: str
    ) -> Row[Any]:
        row = (
            await conn.execute(
                select(runs).where(
                    runs.c.id == run_id,
                    runs.c.thread_id == thread_id,
                    runs.c.project_id == project_id,
                )
            )
        ).first()
        if row is not None:
            return row
        thread = await conn.scalar(
            select(threads.c.seq).where(
                threads.c.id == thread_id, threads.c.project_id == project_id
            )
        )
        if thread is None:
            raise NotFound.object("thread", thread_id)
        raise NotFound.object("run", run_id)

    async def get(self, project_id: str, thread_id: str, run_id: str) -> JSONDict:
        async with self._db.read() as conn:
            return objects.run(await self._scoped_row(conn, project_id, thread_id, run_id))

    async def list_runs(self, project_id: str, thread_id: str, page: PageParams) -> JSONDict:
        async with self._db.read() as conn:
            thread = await conn.scalar(
                select(threads.c.seq).where(
                    threads.c.id == thread_id, threads.c.project_id == project_id
                )
            )
            if thread is None:
                raise NotFound.object("thread", thread_id)
            scope = (runs.c.thread_id == thread_id) & (runs.c.project_id == project_id)
            result = await fetch_page(conn, runs, scope, page)
        return list_object([objects.run(r) for r in result.rows], result.has_more)

    async def modify(
        self, project_id: str, thread_id: str, run_id: str, metadata: dict[str, str] | None
    ) -> JSONDict:
        async with self._db.write() as conn:
            await self._scoped_row(conn, project_id, thread_id, run_id)
            if metadata is not None:
                await conn.execute(
                    update(runs).where(runs.c.id == run_id).values(metadata=metadata)
                )
            return objects.run(await _run_row(conn, run_id))

    async def request_cancel(self, project_id: str, thread_id: str, run_id: str) -> JSONDict:
        """Move an active run to `cancelling`; the workflow finishes the job."""
        async with self._db.write() as conn:
            row = await self._scoped_row(conn, project_id, thread_id, run_id)
            if row.status == "cancelling":
                return objects.run(row)
            if row.status not in ACTIVE:
                raise InvalidRequest(f"Cannot cancel run with status '{row.status}'.")
            await conn.execute(update(runs).where(runs.c.id == run_id).values(status="cancelling"))
            return await _run_event(conn, run_id, "cancelling")

    async def list_steps(
        self, project_id: str, thread_id: str, run_id: str, page: PageParams
    ) -> JSONDict:
        async with self._db.read() as conn:
            await self._scoped_row(conn, project_id, thread_id, run_id)
            scope = (run_steps.c.run_id == run_id) & (run_steps.c.project_id == project_id)
            result = await fetch_page(conn, run_steps, scope, page)
        return list_object([objects.step(r) for r in result.rows], result.has_more)

    async def get_step(
        self, project_id: str, thread_id: str, run_id: str, step_id: str
    ) -> JSONDict:
        async with self._db.read() as conn:
            await self._scoped_row(conn, project_id, thread_id, run_id)
            row = (
                await conn.execute(
                    select(run_steps).where(
                        run_steps.c.id == step_id,
                        run_steps.c.run_id == run_id,
                        run_steps.c.project_id == project_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound.object("run step", step_id)
        return objects.step(row)

    async def stale_queued(self, older_than_s: float) -> list[Any]:
        """Runs still `queued` (or `cancelling` before ever starting) after `older_than_s`."""
        cutoff = int(time.time() - older_than_s)
        async with self._db.read() as conn:
            result = await conn.execute(
                select(
                    runs.c.id,
                    runs.c.status,
                    runs.c.project_id,
                    runs.c.thread_id,
                    runs.c.assistant_id,
                    runs.c.expires_at,
                    runs.c.model,
                )
                .where(runs.c.status.in_(("queued", "cancelling")), runs.c.started_at.is_(None))
                .where(runs.c.created_at <= cutoff)
            )
            return list(result.all())

    # --- worker side -------------------------------------------------------------------------

    async def load(self, run_id: str) -> Row[Any]:
        async with self._db.read() as conn:
            return await _run_row(conn, run_id)

    async def context_messages(self, thread_id: str, exclude_message_id: str) -> list[Any]:
        """The thread's messages in order, for the model prompt."""
        async with self._db.read() as conn:
            result = await conn.execute(
                select(messages.c.id, messages.c.role, messages.c.content, messages.c.status)
                .where(messages.c.thread_id == thread_id, messages.c.id != exclude_message_id)
                .order_by(messages.c.seq)
            )
            return list(result.all())

    async def mark_in_progress(self, run_id: str) -> str:
        """`queued` → `in_progress`. Returns the status the run has afterwards."""
        async with self._db.write() as conn:
            row = await _run_row(conn, run_id, lock=True)
            if row.status != "queued":
                return str(row.status)
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status="in_progress", started_at=int(time.time()))
            )
            await _run_event(conn, run_id, "in_progress")
            return "in_progress"

    async def begin_message(self, run_id: str, step_id: str, message_id: str) -> None:
        """Create the `message_creation` step and its empty assistant message (idempotent)."""
        async with self._db.write() as conn:
            run = await _run_row(conn, run_id, lock=True)
            exists = await conn.scalar(select(run_steps.c.seq).where(run_steps.c.id == step_id))
            if exists is not None:
                return
            now = int(time.time())
            await conn.execute(
                run_steps.insert().values(
                    id=step_id,
                    project_id=run.project_id,
                    run_id=run_id,
                    thread_id=run.thread_id,
                    assistant_id=run.assistant_id,
                    created_at=now,
                    type="message_creation",
                    status="in_progress",
                    step_details={
                        "type": "message_creation",
                        "message_creation": {"message_id": message_id},
                    },
                    metadata=None,
                )
            )
            await conn.execute(
                messages.insert().values(
                    id=message_id,
                    project_id=run.project_id,
                    thread_id=run.thread_id,
                    created_at=now,
                    role="assistant",
                    content=[],
                    attachments=[],
                    metadata={},
                    assistant_id=run.assistant_id,
                    run_id=run_id,
                    status="in_progress",
                )
            )
            step = objects.step(
                (await conn.execute(select(run_steps).where(run_steps.c.id == step_id))).one()
            )
            message = objects.message(
                (await conn.execute(select(messages).where(messages.c.id == message_id))).one()
            )
            await events.append(
                conn, run_id, f"step:{step_id}:created", "thread.run.step.created", step
            )
            await events.append(
                conn, run_id, f"step:{step_id}:in_progress", "thread.run.step.in_progress", step
            )
            await events.append(
                conn, run_id, f"msg:{message_id}:created", "thread.message.created", message
            )
            await events.append(
                conn, run_id, f"msg:{message_id}:in_progress", "thread.message.in_progress", message
            )

    async def append_message_delta(
        self, run_id: str, message_id: str, key: str, text: str, first: bool
    ) -> None:
        text_delta: JSONDict = {"value": text}
        if first:
            text_delta["annotations"] = []
        delta = {
            "id": message_id,
            "object": "thread.message.delta",
            "delta": {"content": [{"index": 0, "type": "text", "text": text_delta}]},
        }
        async with self._db.write() as conn:
            await events.append(conn, run_id, key, "thread.message.delta", delta)

    async def emitted_message_text(self, run_id: str, message_id: str) -> str:
        """The text already streamed for a message, from its delta events."""
        async with self._db.read() as conn:
            deltas = await events.data_with_key_prefix(conn, run_id, f"delta:{message_id}:")
        return "".join(d["delta"]["content"][0]["text"].get("value", "") for d in deltas)

    async def complete_message(
        self,
        run_id: str,
        step_id: str,
        message_id: str,
        text: str,
        usage: JSONDict,
        truncated: bool,
    ) -> None:
        """Store the final text; message `completed` (or `incomplete` when cut by the token limit),
        step `completed` with its usage. Idempotent."""
        now = int(time.time())
        async with self._db.write() as conn:
            await _run_row(conn, run_id, lock=True)
            msg = (await conn.execute(select(messages).where(messages.c.id == message_id))).one()
            if msg.status == "in_progress":
                values: JSONDict = {"content": objects.text_content(text)}
                if truncated:
                    values |= {
                        "status": "incomplete",
                        "incomplete_at": now,
                        "incomplete_details": {"reason": "max_tokens"},
                    }
                else:
                    values |= {"status": "completed", "completed_at": now}
                await conn.execute(
                    update(messages).where(messages.c.id == message_id).values(**values)
                )
                message = objects.message(
                    (await conn.execute(select(messages).where(messages.c.id == message_id))).one()
                )
                name = "thread.message.incomplete" if truncated else "thread.message.completed"
                await events.append(conn, run_id, f"msg:{message_id}:done", name, message)
            step_row = (
                await conn.execute(select(run_steps).where(run_steps.c.id == step_id))
            ).one()
            if step_row.status == "in_progress":
                await conn.execute(
                    update(run_steps)
                    .where(run_steps.c.id == step_id)
                    .values(status="completed", completed_at=now, usage=usage)
                )
                step = objects.step(
                    (await conn.execute(select(run_steps).where(run_steps.c.id == step_id))).one()
                )
                await events.append(
                    conn, run_id, f"step:{step_id}:done", "thread.run.step.completed", step
                )

    async def finish(
        self,
        run_id: str,
        status: str,
        *,
        usage: JSONDict | None = None,
        last_error: JSONDict | None = None,
        incomplete_reason: str | None = None,
    ) -> JSONDict:
        """Move the run to a terminal status, close what it left open, release the thread lock."""
        now = int(time.time())
        async with self._db.write() as conn:
            row = await _run_row(conn, run_id, lock=True)
            if row.status in TERMINAL:
                return objects.run(row)
            values: JSONDict = {"status": status, "expires_at": None, "required_action": None}
            if usage is not None:
                values["usage"] = usage
            if status in ("completed", "incomplete"):
                values["completed_at"] = now
            if status == "incomplete":
                values["incomplete_details"] = {"reason": incomplete_reason}
            if status == "failed":
                values["failed_at"] = now
                values["last_error"] = last_error
            if status == "cancelled":
                values["cancelled_at"] = now
            await self._close_open_items(conn, run_id, status, now, last_error)
            await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            await conn.execute(
                update(threads)
                .where(threads.c.id == row.thread_id, threads.c.active_run_id == run_id)
                .values(active_run_id=None)
            )
            return await _run_event(conn, run_id, status, key="run:terminal")

    async def _close_open_items(
        self, conn: AsyncConnection, run_id: str, status: str, now: int, last_error: JSONDict | None
    ) -> None:
        open_messages = await conn.execute(
            select(messages.c.id).where(
                messages.c.run_id == run_id, messages.c.status == "in_progress"
            )
        )
        for (message_id,) in open_messages.all():
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    status="incomplete",
                    incomplete_at=now,
                    incomplete_details={"reason": _MESSAGE_REASON[status]},
                )
            )
            message = objects.message(
                (await conn.execute(select(messages).where(messages.c.id == message_id))).one()
            )
            await events.append(
                conn, run_id, f"msg:{message_id}:done", "thread.message.incomplete", message
            )
        open_steps = await conn.execute(
            select(run_steps.c.id).where(
                run_steps.c.run_id == run_id, run_steps.c.status == "in_progress"
            )
        )
        step_status = _STEP_STATUS[status]
        for (step_id,) in open_steps.all():
            values: JSONDict = {"status": step_status, _STEP_TIME_COLUMN[step_status]: now}
            if step_status == "failed" and last_error is not None:
                code = last_error.get("code")
                values["last_error"] = {
                    "code": code
                    if code in ("server_error", "rate_limit_exceeded")
                    else "server_error",
                    "message": last_error.get("message", ""),
                }
            await conn.execute(update(run_steps).where(run_steps.c.id == step_id).values(**values))
            step = objects.step(
                (await conn.execute(select(run_steps).where(run_steps.c.id == step_id))).one()
            )
            await events.append(
                conn, run_id, f"step:{step_id}:done", f"thread.run.step.{step_status}", step
            )

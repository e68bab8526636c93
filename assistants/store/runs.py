"""Runs and run steps: creation under the thread lock, reads, and every state transition.

Each transition is one transaction that updates the row(s), appends the matching event(s) to the
run's event log and, on a terminal status, releases the thread lock. Transitions are conditional on
the current status, so they are idempotent (a retried activity changes nothing twice) and a late
writer can never resurrect a finished run.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store import events, objects
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.prepared import (
    Prepared,
    StoredRow,
    insert_rows,
    select_one,
    select_where,
    update_by_id,
)
from assistants.store.tables import messages, run_steps, runs, threads, tool_output_submissions
from assistants.store.threads import insert_message, lock_thread_row, require_thread
from assistants.store.webhooks import webhook_targets

JSONDict = dict[str, Any]

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
# What the API's sweeper needs to (re)start a run's workflow or signal it.
_LAUNCH_COLUMNS = (
    runs.c.id,
    runs.c.status,
    runs.c.project_id,
    runs.c.thread_id,
    runs.c.assistant_id,
    runs.c.expires_at,
    runs.c.model,
)
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


# Built once (the hot path's statements; see `events._TAKE_SEQS`).
_RUN_ROW_QUERY = select(runs).where(runs.c.id == bindparam("run_id"))
_RUN_ROW = Prepared(_RUN_ROW_QUERY)
_RUN_ROW_LOCKED = Prepared(_RUN_ROW_QUERY.with_for_update())
_RUN_STATUS = Prepared(select(runs.c.status).where(runs.c.id == bindparam("run_id")))
_RUN_STATUSES = select(runs.c.id, runs.c.status).where(
    runs.c.id.in_(bindparam("ids", expanding=True))
)
# Ids per statement in `statuses`: well under SQLite's and asyncpg's bound-parameter limits.
_STATUS_BATCH = 500
_ANY_STEP = (
    select(run_steps.c.id).where(run_steps.c.id.in_(bindparam("ids", expanding=True))).limit(1)
)


def run_row(conn: Connection, run_id: str, *, lock: bool = False) -> StoredRow:
    row = (_RUN_ROW_LOCKED if lock else _RUN_ROW).first(conn, {"run_id": run_id})
    if row is None:
        raise NotFound.object("run", run_id)
    return row


def run_event(conn: Connection, run_id: str, status: str, key: str | None = None) -> JSONDict:
    run = objects.run(run_row(conn, run_id))
    events.append(conn, run_id, key or f"run:{status}", f"thread.run.{status}", run)
    return run


def create_run(
    conn: Connection,
    project_id: str,
    thread_id: str,
    fields: JSONDict,
    additional_messages: list[JSONDict],
    *,
    new_thread: JSONDict | None = None,
    run_id: str | None = None,
) -> JSONDict:
    """Take the thread lock and insert the run as `queued`, with its first events
    (`thread.created` first when the run comes with a new thread)."""
    thread = lock_thread_row(conn, project_id, thread_id)
    if thread.active_run_id is not None:
        raise InvalidRequest(
            f"Thread {thread_id} already has an active run {thread.active_run_id}."
        )
    run_id = run_id or new_id("run")
    for message in additional_messages:
        insert_message(conn, project_id, thread_id, message)
    insert_rows(
        conn,
        runs,
        [
            {
                "id": run_id,
                "project_id": project_id,
                "thread_id": thread_id,
                "status": "queued",
                "event_seq": 0,
                **fields,
            }
        ],
    )
    update_by_id(conn, threads, thread_id, {"active_run_id": run_id})
    run = objects.run(run_row(conn, run_id))
    created = [("thread:created", "thread.created", new_thread)] if new_thread is not None else []
    events.append_many(
        conn,
        run_id,
        [
            *created,
            ("run:created", "thread.run.created", run),
            ("run:queued", "thread.run.queued", run),
        ],
    )
    return run


def scoped_row(conn: Connection, project_id: str, thread_id: str, run_id: str) -> StoredRow:
    row = select_where(conn, runs, {"id": run_id, "thread_id": thread_id, "project_id": project_id})
    if row is not None:
        return row
    require_thread(conn, project_id, thread_id)
    raise NotFound.object("run", run_id)


class RunStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- API side ----------------------------------------------------------------------------

    async def create(
        self, project_id: str, thread_id: str, fields: JSONDict, additional_messages: list[JSONDict]
    ) -> JSONDict:
        return await self._db.write(
            lambda conn: create_run(conn, project_id, thread_id, fields, additional_messages)
        )

    async def get(self, project_id: str, thread_id: str, run_id: str) -> JSONDict:
        return await self._db.lookup(
            lambda conn: objects.run(scoped_row(conn, project_id, thread_id, run_id))
        )

    async def list_runs(self, project_id: str, thread_id: str, page: PageParams) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            require_thread(conn, project_id, thread_id)
            scope = (runs.c.thread_id == thread_id) & (runs.c.project_id == project_id)
            result = fetch_page(conn, runs, scope, page)
            return list_object([objects.run(r) for r in result.rows], result.has_more)

        return await self._db.lookup(tx)

    async def modify(
        self, project_id: str, thread_id: str, run_id: str, metadata: dict[str, str] | None
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            scoped_row(conn, project_id, thread_id, run_id)
            if metadata is not None:
                conn.execute(update(runs).where(runs.c.id == run_id).values(metadata=metadata))
            return objects.run(run_row(conn, run_id))

        return await self._db.write(tx)

    async def request_cancel(self, project_id: str, thread_id: str, run_id: str) -> JSONDict:
        """Move an active run to `cancelling`; the workflow finishes the job. The same write
        puts the cancel in the outbox (`cancel_requested_at`, no `cancel_delivered_at`), so it
        reaches the workflow even if the signal sent right after is lost."""

        def tx(conn: Connection) -> JSONDict:
            row = scoped_row(conn, project_id, thread_id, run_id)
            if row.status == "cancelling":
                return objects.run(row)
            if row.status not in ACTIVE:
                raise InvalidRequest(f"Cannot cancel run with status '{row.status}'.")
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="cancelling",
                    cancel_requested_at=int(time.time()),
                    cancel_delivered_at=None,
                )
            )
            return run_event(conn, run_id, "cancelling")

        return await self._db.write(tx)

    async def undelivered_cancels(self, older_than_s: float) -> list[Any]:
        """`cancelling` runs whose `cancel` signal Temporal has not acknowledged, requested at
        least `older_than_s` ago (the request that wrote it is still sending it until then)."""
        cutoff = int(time.time() - older_than_s)
        query = select(*_LAUNCH_COLUMNS).where(
            runs.c.status == "cancelling",
            runs.c.cancel_delivered_at.is_(None),
            # Runs that were `cancelling` before the outbox existed have no request time.
            func.coalesce(runs.c.cancel_requested_at, 0) <= cutoff,
        )
        return await self._db.read(lambda conn: list(conn.execute(query).all()))

    async def cancel_delivered(self, run_id: str) -> None:
        """Temporal has the `cancel` signal (or the workflow is gone): out of the outbox."""
        await self._db.write(
            lambda conn: conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.cancel_delivered_at.is_(None))
                .values(cancel_delivered_at=int(time.time()))
            )
        )

    async def list_steps(
        self,
        project_id: str,
        thread_id: str,
        run_id: str,
        page: PageParams,
        include_content: bool = False,
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            scoped_row(conn, project_id, thread_id, run_id)
            scope = (run_steps.c.run_id == run_id) & (run_steps.c.project_id == project_id)
            result = fetch_page(conn, run_steps, scope, page)
            steps = [objects.step(r, include_content) for r in result.rows]
            return list_object(steps, result.has_more)

        return await self._db.lookup(tx)

    async def get_step(
        self,
        project_id: str,
        thread_id: str,
        run_id: str,
        step_id: str,
        include_content: bool = False,
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            scoped_row(conn, project_id, thread_id, run_id)
            row = conn.execute(
                select(run_steps).where(
                    run_steps.c.id == step_id,
                    run_steps.c.run_id == run_id,
                    run_steps.c.project_id == project_id,
                )
            ).first()
            if row is None:
                raise NotFound.object("run step", step_id)
            return objects.step(row, include_content)

        return await self._db.lookup(tx)

    async def stale_queued(self, older_than_s: float) -> list[Any]:
        """Runs still `queued` without ever having started, created `older_than_s` ago or more.
        (A run cancelled before it started is in the cancel outbox: `undelivered_cancels`.)"""
        cutoff = int(time.time() - older_than_s)
        query = (
            select(*_LAUNCH_COLUMNS)
            .where(runs.c.status == "queued", runs.c.started_at.is_(None))
            .where(runs.c.created_at <= cutoff)
        )
        return await self._db.read(lambda conn: list(conn.execute(query).all()))

    # --- worker side -------------------------------------------------------------------------

    async def event_snapshot(self, run_id: str, event: str) -> tuple[JSONDict, int] | None:
        """The run object as the newest `event` (e.g. `thread.run.completed`) carried it."""
        return await self._db.lookup(lambda conn: events.latest_named(conn, run_id, event))

    async def message_texts(self, run_id: str) -> list[str]:
        """The texts of the assistant messages a run wrote, in order."""
        query = (
            select(messages.c.content).where(messages.c.run_id == run_id).order_by(messages.c.seq)
        )
        rows = await self._db.read(lambda conn: list(conn.execute(query).all()))
        return [
            "".join(b["text"]["value"] for b in row.content if b.get("type") == "text")
            for row in rows
        ]

    async def statuses(self, run_ids: Collection[str]) -> dict[str, str]:
        """Id → status of those of `run_ids` that exist, in one read (a worker's run watch)."""
        ids = list(run_ids)

        def tx(conn: Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for at in range(0, len(ids), _STATUS_BATCH):
                rows = conn.execute(_RUN_STATUSES, {"ids": ids[at : at + _STATUS_BATCH]})
                found.update((row.id, row.status) for row in rows)
            return found

        return await self._db.read(tx)

    async def start_round(
        self,
        run_id: str,
        round_key: str,
        message_id: str,
        steps: tuple[str, ...] = (),
        completes: str | None = None,
    ) -> RoundStart:
        """The start of a model round in one transaction: `queued → in_progress` (every round
        starts `queued`: after tool outputs the run is `queued` again), the run, and the thread's
        messages for the prompt except those this run wrote (they come back, interleaved with its
        tool rounds, from `ToolCallStore.run_turns`). One commit on the way to the first token;
        the messages are read only when the round goes ahead.

        A run that this round's answer (`message_id`) already ended is `answered`: an earlier
        attempt committed the answer and the run's end, then its worker died before Temporal
        heard of it.

        A round whose `steps` (its message step and tool step) already exist is `resumed`: an
        earlier attempt wrote output before it died, even when the attempt count cannot say so
        (a local activity's attempts start again at 1 on the worker that replays its workflow).

        `completes`: the tool step of the round before, whose calls the worker answered; it is
        completed in this commit, whatever the run's status (its outputs are all recorded).
        """

        def tx(conn: Connection) -> RoundStart:
            if completes is not None:
                run_row(conn, run_id, lock=True)  # the run's lock before its rows, as always
                complete_step(conn, run_id, completes, int(time.time()))
            status = _mark_in_progress(conn, run_id, round_key)
            row = run_row(conn, run_id)
            if status != "in_progress":
                answered = status in ("completed", "incomplete") and (
                    conn.scalar(
                        select(messages.c.status).where(
                            messages.c.id == message_id, messages.c.run_id == run_id
                        )
                    )
                    in ("completed", "incomplete")
                )
                return RoundStart(status, row, [], answered=answered)
            history = list(_CONTEXT.all(conn, {"thread_id": row.thread_id, "run_id": run_id}))
            resumed = bool(steps) and conn.scalar(_ANY_STEP, {"ids": list(steps)}) is not None
            return RoundStart(status, row, history, resumed=resumed)

        return await self._db.write(tx)

    async def begin_message(
        self, run_id: str, step_id: str, message_id: str, first_delta: str = ""
    ) -> bool:
        """Create the `message_creation` step and its empty assistant message (idempotent), and
        with `first_delta` the message's first `thread.message.delta` in the same commit (one
        commit on the way to the first token instead of two). Returns False, writing nothing,
        once the run is no longer `in_progress` (cancelling): no new output appears after a
        cancellation request."""

        delta = _delta(message_id, first_delta, first=True)

        def tx(conn: Connection) -> bool:
            run = run_row(conn, run_id, lock=True)
            if run.status != "in_progress":
                return False
            if _STEP_EXISTS.scalar(conn, {"step_id": step_id}) is not None:
                return True
            now = int(time.time())
            insert_rows(
                conn,
                run_steps,
                [
                    {
                        "id": step_id,
                        "project_id": run.project_id,
                        "run_id": run_id,
                        "thread_id": run.thread_id,
                        "assistant_id": run.assistant_id,
                        "created_at": now,
                        "type": "message_creation",
                        "status": "in_progress",
                        "step_details": {
                            "type": "message_creation",
                            "message_creation": {"message_id": message_id},
                        },
                        "metadata": None,
                    }
                ],
            )
            insert_rows(
                conn,
                messages,
                [
                    {
                        "id": message_id,
                        "project_id": run.project_id,
                        "thread_id": run.thread_id,
                        "created_at": now,
                        "role": "assistant",
                        "content": [],
                        "attachments": [],
                        "metadata": {},
                        "assistant_id": run.assistant_id,
                        "run_id": run_id,
                        "status": "in_progress",
                    }
                ],
            )
            step = objects.step(select_one(conn, run_steps, step_id))
            message = objects.message(select_one(conn, messages, message_id))
            events.append_many(
                conn,
                run_id,
                [
                    (f"step:{step_id}:created", "thread.run.step.created", step),
                    (f"step:{step_id}:in_progress", "thread.run.step.in_progress", step),
                    (f"msg:{message_id}:created", "thread.message.created", message),
                    (f"msg:{message_id}:in_progress", "thread.message.in_progress", message),
                    *(
                        [(f"delta:{message_id}:0", "thread.message.delta", delta)]
                        if first_delta
                        else []
                    ),
                ],
            )
            return True

        return await self._db.write(tx)

    async def append_message_delta(
        self,
        run_id: str,
        message_id: str,
        key: str,
        text: str,
        first: bool,
        annotations: list[JSONDict] | None = None,
    ) -> bool:
        """Append a `thread.message.delta`; False (and nothing written) if the run is no longer
        `in_progress`. `annotations` (file citations of markers in `text`, each with its `index`)
        go out in the same delta as their markers."""
        delta = _delta(message_id, text, first, annotations)

        def tx(conn: Connection) -> bool:
            if _RUN_STATUS.scalar(conn, {"run_id": run_id}) != "in_progress":
                return False
            events.append(conn, run_id, key, "thread.message.delta", delta)
            return True

        return await self._db.write(tx)

    async def emitted_message_text(self, run_id: str, message_id: str) -> str:
        """The text already streamed for a message, from its delta events."""
        deltas = await self._db.read(
            lambda conn: events.data_with_key_prefix(conn, run_id, f"delta:{message_id}:")
        )
        return "".join(d["delta"]["content"][0]["text"].get("value", "") for d in deltas)

    async def complete_message(
        self,
        run_id: str,
        step_id: str,
        message_id: str,
        text: str,
        usage: JSONDict,
        truncated: bool,
        images: list[str] | None = None,
        annotations: list[JSONDict] | None = None,
        streamed_annotations: int = 0,
        end: RunEnd | None = None,
    ) -> RunEnded | None:
        """Store the final text; message `completed` (or `incomplete` when cut by the token limit),
        step `completed` with its usage. Idempotent. With `end` (the model's answer ends the run)
        the run ends in the same commit, if it is still `in_progress`: a client sees `completed`
        as soon as the answer is stored, not one workflow task later. Returns the status this
        commit ended the run with and the webhooks subscribed to that end (None: it did not end
        the run). `images` (file ids, from
        code_interpreter) follow the text as `image_file` blocks, each streamed as its own delta;
        `annotations` (the text's `file_path` ones) stream in one last text delta, except the
        first `streamed_annotations` (file citations, streamed with their markers)."""
        now = int(time.time())
        blocks = [{"type": "image_file", "image_file": {"file_id": f}} for f in images or []]
        content = objects.text_content(text)
        content[0]["text"]["annotations"] = list(annotations or [])

        def tx(conn: Connection) -> RunEnded | None:
            run_row(conn, run_id, lock=True)
            batch = events.Batch(run_id)  # the events of this commit, appended at its end
            if select_one(conn, messages, message_id).status == "in_progress":
                if annotations and len(annotations) > streamed_annotations:
                    batch.add(
                        f"annotations:{message_id}",
                        "thread.message.delta",
                        {
                            "id": message_id,
                            "object": "thread.message.delta",
                            "delta": {
                                "content": [
                                    {
                                        "index": 0,
                                        "type": "text",
                                        "text": {
                                            "annotations": [
                                                {"index": i} | a
                                                for i, a in enumerate(annotations)
                                                if i >= streamed_annotations
                                            ]
                                        },
                                    }
                                ]
                            },
                        },
                    )
                for index, block in enumerate(blocks, start=1):
                    delta = {"index": index} | block
                    batch.add(
                        f"imgdelta:{message_id}:{index}",
                        "thread.message.delta",
                        {
                            "id": message_id,
                            "object": "thread.message.delta",
                            "delta": {"content": [delta]},
                        },
                    )
                values: JSONDict = {"content": content + blocks}
                if truncated:
                    values |= {
                        "status": "incomplete",
                        "incomplete_at": now,
                        "incomplete_details": {"reason": "max_tokens"},
                    }
                else:
                    values |= {"status": "completed", "completed_at": now}
                update_by_id(conn, messages, message_id, values)
                message = objects.message(select_one(conn, messages, message_id))
                name = "thread.message.incomplete" if truncated else "thread.message.completed"
                batch.add(f"msg:{message_id}:done", name, message)
            if select_one(conn, run_steps, step_id).status == "in_progress":
                update_by_id(
                    conn,
                    run_steps,
                    step_id,
                    {"status": "completed", "completed_at": now, "usage": usage},
                )
                step = objects.step(select_one(conn, run_steps, step_id))
                batch.add(f"step:{step_id}:done", "thread.run.step.completed", step)
            row = run_row(conn, run_id)
            if end is None or row.status != "in_progress":
                batch.flush(conn)
                return None
            status = str(_finish(conn, run_id, end, batch)["status"])
            batch.flush(conn)
            return RunEnded(status, webhook_targets(conn, row.project_id, f"thread.run.{status}"))

        return await self._db.write(tx)

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
        end = RunEnd(status, usage, last_error, incomplete_reason)
        return await self._db.write(lambda conn: _finish(conn, run_id, end))


def _delta(
    message_id: str, text: str, first: bool, annotations: list[JSONDict] | None = None
) -> JSONDict:
    text_delta: JSONDict = {"value": text}
    if first or annotations:
        text_delta["annotations"] = list(annotations or [])
    return {
        "id": message_id,
        "object": "thread.message.delta",
        "delta": {"content": [{"index": 0, "type": "text", "text": text_delta}]},
    }


@dataclass(frozen=True)
class RunEnd:
    """A terminal status and what goes with it, for `RunStore.finish`."""

    status: str
    usage: JSONDict | None = None
    last_error: JSONDict | None = None
    incomplete_reason: str | None = None


@dataclass(frozen=True)
class RunEnded:
    """How a commit ended a run: its terminal status and the webhooks subscribed to it."""

    status: str
    webhooks: list[str]


@dataclass(frozen=True)
class RoundStart:
    """What a model round starts from: the run's status after `queued → in_progress`, its row,
    and (when in progress) the thread's messages for the prompt."""

    status: str
    run: StoredRow
    history: list[StoredRow]
    answered: bool = False
    resumed: bool = False


def complete_step(conn: Connection, run_id: str, step_id: str, now: int) -> None:
    """A tool step whose calls are all answered is `completed` (idempotent). The caller holds
    the run's lock."""
    if select_one(conn, run_steps, step_id).status != "in_progress":
        return
    conn.execute(
        update(run_steps)
        .where(run_steps.c.id == step_id)
        .values(status="completed", completed_at=now)
    )
    step = objects.step(select_one(conn, run_steps, step_id))
    events.append(conn, run_id, f"step:{step_id}:done", "thread.run.step.completed", step)


def _mark_in_progress(conn: Connection, run_id: str, round_key: str) -> str:
    row = run_row(conn, run_id, lock=True)
    if row.status != "queued":
        return str(row.status)
    update_by_id(
        conn,
        runs,
        run_id,
        {"status": "in_progress", "started_at": row.started_at or int(time.time())},
    )
    run_event(conn, run_id, "in_progress", key=f"run:in_progress:{round_key}")
    return "in_progress"


_CONTEXT = Prepared(
    select(messages.c.id, messages.c.role, messages.c.content, messages.c.status)
    .where(
        messages.c.thread_id == bindparam("thread_id"),
        (messages.c.run_id.is_(None)) | (messages.c.run_id != bindparam("run_id")),
    )
    .order_by(messages.c.seq)
)
_STEP_EXISTS = Prepared(select(run_steps.c.seq).where(run_steps.c.id == bindparam("step_id")))
_OPEN_MESSAGES = Prepared(
    select(messages.c.id).where(
        messages.c.run_id == bindparam("run_id"), messages.c.status == "in_progress"
    )
)
_OPEN_STEPS = Prepared(
    select(run_steps.c.id).where(
        run_steps.c.run_id == bindparam("run_id"), run_steps.c.status == "in_progress"
    )
)
_DROP_STAGED_OUTPUTS = Prepared(
    delete(tool_output_submissions).where(
        tool_output_submissions.c.run_id == bindparam("run_id"),
        tool_output_submissions.c.applied_at.is_(None),
    )
)
_RELEASE_THREAD = Prepared(
    update(threads)
    .where(threads.c.id == bindparam("thread_id"), threads.c.active_run_id == bindparam("run_id"))
    .values(active_run_id=None)
)


def _finish(
    conn: Connection, run_id: str, end: RunEnd, batch: events.Batch | None = None
) -> JSONDict:
    """Move the run to a terminal status (unless it has one), close what it left open, release
    the thread lock; the run as its terminal event carries it. With `batch`, the events go into
    it (the caller appends them); without, they are appended here."""
    now = int(time.time())
    status = end.status
    row = run_row(conn, run_id, lock=True)
    if row.status in TERMINAL:
        return objects.run(row)
    values: JSONDict = {"status": status, "expires_at": None, "required_action": None}
    if end.usage is not None:
        values["usage"] = end.usage
    if status in ("completed", "incomplete"):
        values["completed_at"] = now
    if status == "incomplete":
        values["incomplete_details"] = {"reason": end.incomplete_reason}
    if status == "failed":
        values["failed_at"] = now
        values["last_error"] = end.last_error
    if status == "cancelled":
        values["cancelled_at"] = now
    own = batch is None
    batch = events.Batch(run_id) if batch is None else batch
    _close_open_items(conn, run_id, status, now, end.last_error, batch)
    # Staged outputs can never apply now. Applied ones whose request failed stay, so that
    # request's retry still answers success (see `ToolCallStore.stage_outputs`).
    _DROP_STAGED_OUTPUTS.run(conn, {"run_id": run_id})
    update_by_id(conn, runs, run_id, values)
    _RELEASE_THREAD.run(conn, {"thread_id": row.thread_id, "run_id": run_id})
    run = objects.run(run_row(conn, run_id))
    batch.add("run:terminal", f"thread.run.{status}", run)
    if own:
        batch.flush(conn)
    return run


def _close_open_items(
    conn: Connection,
    run_id: str,
    status: str,
    now: int,
    last_error: JSONDict | None,
    batch: events.Batch,
) -> None:
    open_messages = _OPEN_MESSAGES.all(conn, {"run_id": run_id})
    for (message_id,) in open_messages:
        conn.execute(
            update(messages)
            .where(messages.c.id == message_id)
            .values(
                status="incomplete",
                incomplete_at=now,
                incomplete_details={"reason": _MESSAGE_REASON[status]},
            )
        )
        message = objects.message(select_one(conn, messages, message_id))
        batch.add(f"msg:{message_id}:done", "thread.message.incomplete", message)
    open_steps = _OPEN_STEPS.all(conn, {"run_id": run_id})
    step_status = _STEP_STATUS[status]
    for (step_id,) in open_steps:
        values: JSONDict = {"status": step_status, _STEP_TIME_COLUMN[step_status]: now}
        if step_status == "failed" and last_error is not None:
            code = last_error.get("code")
            values["last_error"] = {
                "code": code if code in ("server_error", "rate_limit_exceeded") else "server_error",
                "message": last_error.get("message", ""),
            }
        update_by_id(conn, run_steps, step_id, values)
        step = objects.step(select_one(conn, run_steps, step_id))
        batch.add(f"step:{step_id}:done", f"thread.run.step.{step_status}", step)

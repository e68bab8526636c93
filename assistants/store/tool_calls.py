"""Tool-call steps: streaming a `tool_calls` step, `requires_action`, and tool outputs.

A model round that calls tools gets one `tool_calls` step. Its calls are stored with their
arguments (and later outputs) in `step_details`, which is also what the API serves. Outputs arrive
two ways: a registered tool's activity records its own output, and a client's
`submit_tool_outputs` is first staged in `tool_output_submissions` (validated against the run),
then applied by the workflow's update handler in one transaction that fills the outputs, completes
the step and puts the run back in the queue, with the matching events.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest
from assistants.ids import from_uuid_hex, new_id
from assistants.store import events, objects
from assistants.store.db import Database
from assistants.store.runs import run_event, run_row, scoped_row, select_one
from assistants.store.tables import messages, run_steps, runs, tool_output_submissions
from workflows.shared import submission_problem

JSONDict = dict[str, Any]


def tool_call_id(step_id: str, index: int) -> str:
    """Call ids are ours, derived from the step: a retried model call (which the provider
    answers with new ids) keeps the ids a client may already have seen."""
    digest = hashlib.sha256(f"{step_id}:{index}".encode()).hexdigest()[:32]
    return from_uuid_hex("call", digest)


def _step_delta(step_id: str, call: JSONDict) -> JSONDict:
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}},
    }


def required_call_ids(row: Any) -> list[str]:
    action = row.required_action or {}
    calls = action.get("submit_tool_outputs", {}).get("tool_calls", [])
    return [str(c["id"]) for c in calls]


def _active(conn: Connection, run_id: str) -> bool:
    return conn.scalar(select(runs.c.status).where(runs.c.id == run_id)) == "in_progress"


class ToolCallStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- the model round that calls tools ------------------------------------------------------

    async def begin_step(self, run_id: str, step_id: str) -> bool:
        """Create the `tool_calls` step (idempotent); False once the run left `in_progress`."""

        def tx(conn: Connection) -> bool:
            run = run_row(conn, run_id, lock=True)
            if run.status != "in_progress":
                return False
            if conn.scalar(select(run_steps.c.seq).where(run_steps.c.id == step_id)) is not None:
                return True
            conn.execute(
                run_steps.insert().values(
                    id=step_id,
                    project_id=run.project_id,
                    run_id=run_id,
                    thread_id=run.thread_id,
                    assistant_id=run.assistant_id,
                    created_at=int(time.time()),
                    type="tool_calls",
                    status="in_progress",
                    step_details={"type": "tool_calls", "tool_calls": []},
                    metadata=None,
                )
            )
            step = objects.step(select_one(conn, run_steps, step_id))
            events.append(conn, run_id, f"step:{step_id}:created", "thread.run.step.created", step)
            events.append(
                conn, run_id, f"step:{step_id}:in_progress", "thread.run.step.in_progress", step
            )
            return True

        return await self._db.write(tx)

    async def append_delta(self, run_id: str, step_id: str, key: str, call: JSONDict) -> bool:
        """One `thread.run.step.delta` for one call (its `index` inside); False once the run
        left `in_progress`."""

        def tx(conn: Connection) -> bool:
            if not _active(conn, run_id):
                return False
            events.append(conn, run_id, key, "thread.run.step.delta", _step_delta(step_id, call))
            return True

        return await self._db.write(tx)

    async def emitted_deltas(self, run_id: str, step_id: str) -> list[JSONDict]:
        """The tool-call fragments already streamed for a step (for a retried model call)."""
        deltas = await self._db.read(
            lambda conn: events.data_with_key_prefix(conn, run_id, f"tcdelta:{step_id}:")
        )
        return [d["delta"]["step_details"]["tool_calls"][0] for d in deltas]

    async def store_calls(
        self, run_id: str, step_id: str, calls: list[JSONDict], usage: JSONDict
    ) -> list[JSONDict] | None:
        """The round's final calls (`{id, name, arguments}`) onto the step. Returns the calls the
        step holds (an earlier attempt's, if it got there first), or None — nothing written —
        once the run left `in_progress`."""

        def stored(step: Any) -> list[JSONDict]:
            return [
                {
                    "id": c["id"],
                    "name": c["function"]["name"],
                    "arguments": c["function"]["arguments"],
                }
                for c in step.step_details["tool_calls"]
            ]

        def tx(conn: Connection) -> list[JSONDict] | None:
            run_row(conn, run_id, lock=True)
            step = select_one(conn, run_steps, step_id)
            if step.step_details["tool_calls"]:
                return stored(step)
            if not _active(conn, run_id):
                return None
            details = {
                "type": "tool_calls",
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["name"],
                            "arguments": c["arguments"],
                            "output": None,
                        },
                    }
                    for c in calls
                ],
            }
            conn.execute(
                update(run_steps)
                .where(run_steps.c.id == step_id)
                .values(step_details=details, usage=usage)
            )
            return stored(select_one(conn, run_steps, step_id))

        return await self._db.write(tx)

    async def call(self, step_id: str, call_id: str) -> JSONDict:
        """One call of a step: `{id, type, function: {name, arguments, output}}`."""
        step = await self._db.read(lambda conn: select_one(conn, run_steps, step_id))
        for call in step.step_details["tool_calls"]:
            if call["id"] == call_id:
                return dict(call)
        raise LookupError(f"step {step_id} has no tool call {call_id}")

    async def record_output(self, run_id: str, step_id: str, call_id: str, output: str) -> None:
        """A registered tool's output (first writer wins: a retried activity changes nothing)."""

        def tx(conn: Connection) -> None:
            run_row(conn, run_id, lock=True)
            step = select_one(conn, run_steps, step_id)
            details = step.step_details
            changed = False
            for call in details["tool_calls"]:
                if call["id"] == call_id and call["function"]["output"] is None:
                    call["function"]["output"] = output
                    changed = True
            if changed:
                conn.execute(
                    update(run_steps).where(run_steps.c.id == step_id).values(step_details=details)
                )

        await self._db.write(tx)

    async def complete_step(self, run_id: str, step_id: str) -> None:
        """All calls answered by the worker: the step is `completed` (idempotent)."""

        def tx(conn: Connection) -> None:
            run_row(conn, run_id, lock=True)
            _complete(conn, run_id, step_id, int(time.time()))

        await self._db.write(tx)

    async def require_action(self, run_id: str, step_id: str, call_ids: list[str]) -> bool:
        """`in_progress` → `requires_action` for the given calls; False if the run left
        `in_progress` meanwhile (a cancellation)."""

        def tx(conn: Connection) -> bool:
            run = run_row(conn, run_id, lock=True)
            if run.status == "requires_action" and required_call_ids(run) == call_ids:
                return True
            if run.status != "in_progress":
                return False
            step = select_one(conn, run_steps, step_id)
            wanted = set(call_ids)
            calls = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": c["function"]["arguments"],
                    },
                }
                for c in step.step_details["tool_calls"]
                if c["id"] in wanted
            ]
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="requires_action",
                    required_action={
                        "type": "submit_tool_outputs",
                        "submit_tool_outputs": {"tool_calls": calls},
                    },
                )
            )
            run_event(conn, run_id, "requires_action", key=f"run:requires_action:{step_id}")
            return True

        return await self._db.write(tx)

    # --- client outputs ------------------------------------------------------------------------

    async def stage_outputs(
        self, project_id: str, thread_id: str, run_id: str, outputs: list[JSONDict]
    ) -> tuple[str, int]:
        """Check a submission against the run and stage it. Returns the submission id and the
        run's last event seq (a streamed continuation starts after it)."""

        def tx(conn: Connection) -> tuple[str, int]:
            row = scoped_row(conn, project_id, thread_id, run_id)
            check_submission(row.status, required_call_ids(row), outputs)
            submission_id = new_id("tosub")
            conn.execute(
                tool_output_submissions.insert().values(
                    id=submission_id,
                    run_id=run_id,
                    outputs=outputs,
                    created_at=int(time.time()),
                )
            )
            return submission_id, int(row.event_seq)

        return await self._db.write(tx)

    async def discard_submission(self, submission_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                delete(tool_output_submissions).where(tool_output_submissions.c.id == submission_id)
            )
        )

    async def apply_submission(self, run_id: str, step_id: str, submission_id: str) -> bool:
        """Fill the outputs, complete the step, `requires_action` → `queued`. False when the run
        no longer waits (it expired or was cancelled first). Idempotent."""
        now = int(time.time())

        def tx(conn: Connection) -> bool:
            run = run_row(conn, run_id, lock=True)
            staged = conn.execute(
                select(tool_output_submissions.c.outputs).where(
                    tool_output_submissions.c.id == submission_id
                )
            ).first()
            if staged is None:
                # Applied already (the row goes in the same transaction), or discarded by the
                # run's end: only a completed step tells them apart.
                return str(select_one(conn, run_steps, step_id).status) == "completed"
            if run.status != "requires_action":
                return False
            outputs = {o["tool_call_id"]: o["output"] for o in staged.outputs}
            step = select_one(conn, run_steps, step_id)
            details = step.step_details
            for call in details["tool_calls"]:
                if call["id"] in outputs:
                    call["function"]["output"] = outputs[call["id"]]
            conn.execute(
                update(run_steps).where(run_steps.c.id == step_id).values(step_details=details)
            )
            _complete(conn, run_id, step_id, now)
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status="queued", required_action=None)
            )
            run_event(conn, run_id, "queued", key=f"run:queued:{step_id}")
            conn.execute(
                delete(tool_output_submissions).where(tool_output_submissions.c.id == submission_id)
            )
            return True

        return await self._db.write(tx)

    # --- the prompt ------------------------------------------------------------------------------

    async def run_turns(self, run_id: str, exclude_message_id: str) -> list[JSONDict]:
        """This run's own earlier rounds as chat messages, in order: its assistant messages and,
        for each tool round, the assistant's `tool_calls` turn followed by one `tool` turn per
        answered call."""

        def tx(conn: Connection) -> list[JSONDict]:
            steps = conn.execute(
                select(run_steps.c.type, run_steps.c.step_details)
                .where(run_steps.c.run_id == run_id)
                .order_by(run_steps.c.seq)
            ).all()
            texts = {
                r.id: r.content
                for r in conn.execute(
                    select(messages.c.id, messages.c.content).where(messages.c.run_id == run_id)
                )
            }
            turns: list[JSONDict] = []
            for step in steps:
                details = step.step_details
                if step.type == "message_creation":
                    message_id = details["message_creation"]["message_id"]
                    content = texts.get(message_id) or []
                    text = "".join(b["text"]["value"] for b in content if b.get("type") == "text")
                    if message_id != exclude_message_id and text:
                        turns.append({"role": "assistant", "content": text})
                    continue
                calls = details.get("tool_calls") or []
                if not calls:
                    continue
                turns.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": c["id"],
                                "type": "function",
                                "function": {
                                    "name": c["function"]["name"],
                                    "arguments": c["function"]["arguments"],
                                },
                            }
                            for c in calls
                        ],
                    }
                )
                for c in calls:
                    turns.append(
                        {
                            "role": "tool",
                            "tool_call_id": c["id"],
                            "content": c["function"]["output"] or "",
                        }
                    )
            return turns

        return await self._db.read(tx)


def _complete(conn: Connection, run_id: str, step_id: str, now: int) -> None:
    if select_one(conn, run_steps, step_id).status != "in_progress":
        return
    conn.execute(
        update(run_steps)
        .where(run_steps.c.id == step_id)
        .values(status="completed", completed_at=now)
    )
    step = objects.step(select_one(conn, run_steps, step_id))
    events.append(conn, run_id, f"step:{step_id}:done", "thread.run.step.completed", step)


def check_submission(status: str, pending: list[str], outputs: list[JSONDict]) -> None:
    problem = submission_problem(status, pending, [str(o["tool_call_id"]) for o in outputs])
    if problem is not None:
        message, param = problem
        raise InvalidRequest(message, param=param)

"""Tool-call steps: streaming a `tool_calls` step, `requires_action`, and tool outputs.

A model round that calls tools gets one `tool_calls` step. Its calls are stored with their
arguments (and later outputs) in `step_details`, which is also what the API serves. Outputs arrive
two ways: a registered tool's activity records its own output, and a client's
`submit_tool_outputs` is first staged in `tool_output_submissions` (validated against the run),
then applied by the workflow's update handler in one transaction that fills the outputs, completes
the step and puts the run back in the queue, with the matching events.

A request can fail after staging (no worker takes the update in time: 503; the API dies), and
Temporal may still apply its update later. So a submission is made safe to retry: its id, which is
also the update's id, derives from the tool step; a retry stages nothing new and its update joins
the one Temporal holds (first writer wins: the first staged outputs are the ones applied). The row
stays until a request answers success, so a retry that comes after the outputs were applied (even
after the run ended) answers success too. A second submission after a success is a 400, as on
OpenAI.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from assistants.code_interpreter import tool as code_tool
from assistants.errors import InvalidRequest
from assistants.file_search import tool as search_tool
from assistants.ids import from_uuid_hex
from assistants.store import events, file_search, objects
from assistants.store.db import Database
from assistants.store.prepared import select_one
from assistants.store.runs import complete_step, run_event, run_row, scoped_row
from assistants.store.tables import messages, run_steps, runs, tool_output_submissions
from assistants.tool_outputs import submission_problem

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class StagedOutputs:
    """A `submit_tool_outputs` request, staged. `applied` means it retries a request that
    failed (503, crash) after its outputs were applied: answer it, deliver nothing."""

    submission_id: str
    step_id: str
    call_ids: list[str]  # of the staged outputs, which may be an earlier request's
    after_seq: int  # a streamed continuation starts after this event
    applied: bool


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

        stored = _stored_calls

        def tx(conn: Connection) -> list[JSONDict] | None:
            run = run_row(conn, run_id, lock=True)
            step = select_one(conn, run_steps, step_id)
            if step.step_details["tool_calls"]:
                return stored(step)
            if not _active(conn, run_id):
                return None
            searches = file_search.new_calls(conn, run, calls)
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
                    if c.get("type") not in ("code_interpreter", search_tool.KIND)
                    else searches[c["id"]]
                    if c["id"] in searches
                    else code_interpreter_call(c["id"], c["arguments"])
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

    async def stored_round(self, step_id: str) -> tuple[list[JSONDict], JSONDict] | None:
        """A model round's calls as `store_calls` returned them, with the round's usage; None
        until they are stored."""

        def tx(conn: Connection) -> tuple[list[JSONDict], JSONDict] | None:
            step = conn.execute(select(run_steps).where(run_steps.c.id == step_id)).first()
            if step is None or not step.step_details.get("tool_calls"):
                return None
            return _stored_calls(step), dict(step.usage or {})

        return await self._db.read(tx)

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
            complete_step(conn, run_id, step_id, int(time.time()))

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
    ) -> StagedOutputs:
        """Check a submission against the run and stage it, or recognise the retry of one whose
        request failed (see `StagedOutputs`)."""

        def tx(conn: Connection) -> StagedOutputs:
            scoped_row(conn, project_id, thread_id, run_id)  # 404s, scoped to the project
            row = run_row(conn, run_id, lock=True)  # concurrent submissions queue here
            ids = [str(o["tool_call_id"]) for o in outputs]
            problem = submission_problem(row.status, required_call_ids(row), ids)
            if problem is not None:
                retry = _applied_unacknowledged(conn, run_id, ids)
                if retry is None:
                    raise InvalidRequest(problem[0], param=problem[1])
                done = events.by_key(conn, run_id, f"step:{retry.step_id}:done")
                return StagedOutputs(
                    submission_id=retry.id,
                    step_id=retry.step_id,
                    call_ids=_call_ids(retry.outputs),
                    after_seq=(done.seq - 1) if done else int(row.event_seq),
                    applied=True,
                )
            step_id = _step_of_call(conn, run_id, ids[0])
            sub_id = submission_id(step_id)
            staged = conn.execute(
                select(tool_output_submissions.c.outputs).where(
                    tool_output_submissions.c.id == sub_id
                )
            ).first()
            if staged is None:
                conn.execute(
                    tool_output_submissions.insert().values(
                        id=sub_id,
                        run_id=run_id,
                        step_id=step_id,
                        outputs=outputs,
                        created_at=int(time.time()),
                    )
                )
            # else: an earlier request staged this step's outputs and failed; Temporal may hold
            # its update still. First writer wins: those outputs are the ones applied.
            return StagedOutputs(
                submission_id=sub_id,
                step_id=step_id,
                call_ids=_call_ids(staged.outputs) if staged else ids,
                after_seq=int(row.event_seq),
                applied=False,
            )

        return await self._db.write(tx)

    async def submission_result(self, run_id: str, step_id: str) -> JSONDict | None:
        """The run as the `thread.run.queued` event of this step's applied submission carried
        it; None if no submission was applied to the step."""

        def tx(conn: Connection) -> JSONDict | None:
            event = events.by_key(conn, run_id, f"run:queued:{step_id}")
            return None if event is None else dict(json.loads(event.data))

        return await self._db.read(tx)

    async def acknowledge(self, staged: StagedOutputs, run_id: str) -> JSONDict:
        """The submission's request answers success: forget the staged row, and return the run
        as the submission left it (`queued`), not as it is now (already `in_progress`, maybe)."""

        def tx(conn: Connection) -> JSONDict:
            conn.execute(
                delete(tool_output_submissions).where(
                    tool_output_submissions.c.id == staged.submission_id
                )
            )
            event = events.by_key(conn, run_id, f"run:queued:{staged.step_id}")
            if event is None:  # not reached: the update returned, so the outputs are applied
                return objects.run(run_row(conn, run_id))
            return dict(json.loads(event.data))

        return await self._db.write(tx)

    async def discard_submission(self, submission_id: str) -> None:
        """A rejected submission leaves nothing behind (an applied one is never discarded)."""
        await self._db.write(
            lambda conn: conn.execute(
                delete(tool_output_submissions).where(
                    tool_output_submissions.c.id == submission_id,
                    tool_output_submissions.c.applied_at.is_(None),
                )
            )
        )

    async def forget_unacknowledged(self, older_than_s: float) -> int:
        """Applied submissions whose request never answered success, older than `older_than_s`:
        a retry that late is answered like any other late submission."""
        cutoff = int(time.time() - older_than_s)
        result = await self._db.write(
            lambda conn: conn.execute(
                delete(tool_output_submissions).where(
                    tool_output_submissions.c.applied_at.is_not(None),
                    tool_output_submissions.c.applied_at < cutoff,
                )
            )
        )
        return int(result.rowcount or 0)

    async def apply_submission(self, run_id: str, step_id: str, submission_id: str) -> bool:
        """Fill the outputs, complete the step, `requires_action` → `queued`. False when the run
        no longer waits (it expired or was cancelled first). Idempotent."""
        now = int(time.time())

        def tx(conn: Connection) -> bool:
            run = run_row(conn, run_id, lock=True)
            staged = conn.execute(
                select(
                    tool_output_submissions.c.outputs, tool_output_submissions.c.applied_at
                ).where(tool_output_submissions.c.id == submission_id)
            ).first()
            if staged is None:
                # Applied and acknowledged already (or applied before this column existed), or
                # discarded by the run's end: only a completed step tells them apart.
                return str(select_one(conn, run_steps, step_id).status) == "completed"
            if staged.applied_at is not None:
                return True  # a retried activity
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
            complete_step(conn, run_id, step_id, now)
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status="queued", required_action=None)
            )
            run_event(conn, run_id, "queued", key=f"run:queued:{step_id}")
            # Kept until the request that submitted it answers (`acknowledge`): if that request
            # fails, its retry finds it here and answers success.
            conn.execute(
                update(tool_output_submissions)
                .where(tool_output_submissions.c.id == submission_id)
                .values(applied_at=now)
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
                calls = [
                    file_search.call_turn(c)
                    if c["type"] == search_tool.KIND
                    else c
                    if c["type"] != "code_interpreter"
                    else code_interpreter_turn(c)
                    for c in details.get("tool_calls") or []
                ]
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


def code_interpreter_call(call_id: str, arguments: str) -> JSONDict:
    """A `python` function call as the client sees it: a code_interpreter call."""
    return {
        "id": call_id,
        "type": "code_interpreter",
        "code_interpreter": {"input": code_tool.parse_code(arguments), "outputs": []},
    }


def code_interpreter_ref(call: JSONDict) -> JSONDict:
    return {
        "id": call["id"],
        "type": "code_interpreter",
        "name": code_tool.TOOL_NAME,
        "arguments": call["code_interpreter"]["input"],
    }


def code_interpreter_turn(call: JSONDict) -> JSONDict:
    """A code_interpreter call as the model made it (`python` with `code`) and what it read
    back (logs, and a line per image)."""
    body = call["code_interpreter"]
    outputs = body.get("outputs") or []
    logs = "".join(o["logs"] for o in outputs if o.get("type") == "logs")
    images = [o["image"]["file_id"] for o in outputs if o.get("type") == "image"]
    return {
        "id": call["id"],
        "type": "function",
        "function": {
            "name": code_tool.TOOL_NAME,
            "arguments": json.dumps({"code": body["input"]}),
            "output": code_tool.model_output(logs, images),
        },
    }


def submission_id(step_id: str) -> str:
    """A tool step takes one submission, whose id (also its Temporal update id) derives from the
    step: a retried request stages nothing new, and its update dedups with the first one."""
    digest = hashlib.sha256(f"tool-outputs:{step_id}".encode()).hexdigest()[:32]
    return from_uuid_hex("tosub", digest)


def _call_ids(outputs: list[JSONDict]) -> list[str]:
    return [str(o["tool_call_id"]) for o in outputs]


def _step_of_call(conn: Connection, run_id: str, call_id: str) -> str:
    """The `tool_calls` step (of the run's few) that holds a call."""
    steps = conn.execute(
        select(run_steps.c.id, run_steps.c.step_details)
        .where(run_steps.c.run_id == run_id, run_steps.c.type == "tool_calls")
        .order_by(run_steps.c.seq.desc())
    ).all()
    for step in steps:
        if any(c["id"] == call_id for c in step.step_details.get("tool_calls") or []):
            return str(step.id)
    raise LookupError(f"run {run_id} has no tool call {call_id}")


def _applied_unacknowledged(conn: Connection, run_id: str, ids: list[str]) -> Any:
    """The applied submission of this run, for exactly these calls, whose request never
    answered success (a retry of it answers success, whatever outputs it carries)."""
    if len(set(ids)) != len(ids):
        return None
    rows = conn.execute(
        select(tool_output_submissions).where(
            tool_output_submissions.c.run_id == run_id,
            tool_output_submissions.c.applied_at.is_not(None),
        )
    ).all()
    for row in rows:
        if row.step_id is not None and set(_call_ids(row.outputs)) == set(ids):
            return row
    return None


def _stored_calls(step: Any) -> list[JSONDict]:
    """A tool-calls step's calls as a model round reports them (`{id, name, arguments}`, and the
    built-in tools' references)."""
    return [
        {
            "id": c["id"],
            "name": c["function"]["name"],
            "arguments": c["function"]["arguments"],
        }
        if c["type"] == "function"
        else file_search.call_ref(c)
        if c["type"] == search_tool.KIND
        else code_interpreter_ref(c)
        for c in step.step_details["tool_calls"]
    ]

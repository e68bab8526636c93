"""The store side of code_interpreter calls: their code, the files a session sees, their outputs.

A code_interpreter call lives on its run's `tool_calls` step as
`{id, type: "code_interpreter", code_interpreter: {input, outputs}}`. Its outputs are written
once (first writer wins, keyed by the output delta event, so nothing is recorded twice) together
with the `thread.run.step.delta` that streams them. Images the code displayed also belong in the
run's next assistant message as `image_file` blocks (`pending_images`).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from assistants.code_interpreter.tool import sandbox_links
from assistants.files.base import check_key
from assistants.store import events
from assistants.store.db import Database
from assistants.store.prepared import select_one
from assistants.store.runs import run_row
from assistants.store.tables import assistants, files, messages, run_steps, runs, threads

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class CodeFiles:
    """What a run's code may see under /mnt/data, and where the run belongs."""

    project_id: str
    thread_id: str
    file_ids: list[str]


def output_key(project_id: str, thread_id: str, file_id: str) -> str:
    """Blob key of a file the thread's code wrote: under the thread, so a reply's
    `sandbox:/mnt/data/<name>` link resolves to this thread's file, never another's."""
    return check_key(f"files/{project_id}/ci/{thread_id}/{file_id}")


def outputs_key(call_id: str) -> str:
    return f"cioutputs:{call_id}"


def _code_ids(tool_resources: Any) -> list[str]:
    resources = tool_resources or {}
    return list((resources.get("code_interpreter") or {}).get("file_ids") or [])


class CodeInterpreterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def code_call(self, step_id: str, call_id: str) -> JSONDict:
        """`{input, outputs}` of a code_interpreter call."""
        step = await self._db.read(lambda conn: select_one(conn, run_steps, step_id))
        for call in step.step_details["tool_calls"]:
            if call["id"] == call_id and call.get("type") == "code_interpreter":
                return dict(call["code_interpreter"])
        raise LookupError(f"step {step_id} has no code_interpreter call {call_id}")

    async def recorded(self, run_id: str, call_id: str) -> bool:
        key = outputs_key(call_id)
        return await self._db.read(lambda conn: events.by_key(conn, run_id, key) is not None)

    async def code_files(self, run_id: str) -> CodeFiles:
        """The assistant's and the thread's `tool_resources.code_interpreter.file_ids`, then
        every file attached to the thread's messages for code_interpreter; live files only."""

        def tx(conn: Connection) -> CodeFiles:
            run = conn.execute(
                select(runs.c.project_id, runs.c.thread_id, runs.c.assistant_id).where(
                    runs.c.id == run_id
                )
            ).one()
            ids = _code_ids(
                conn.scalar(
                    select(assistants.c.tool_resources).where(assistants.c.id == run.assistant_id)
                )
            )
            ids += _code_ids(
                conn.scalar(select(threads.c.tool_resources).where(threads.c.id == run.thread_id))
            )
            for (attachments,) in conn.execute(
                select(messages.c.attachments)
                .where(messages.c.thread_id == run.thread_id)
                .order_by(messages.c.seq)
            ):
                for attachment in attachments or []:
                    kinds = {t.get("type") for t in attachment.get("tools") or []}
                    if "code_interpreter" in kinds:
                        ids.append(attachment["file_id"])
            wanted = list(dict.fromkeys(ids))
            live = set()
            if wanted:
                live = set(
                    conn.scalars(
                        select(files.c.id).where(
                            files.c.project_id == run.project_id, files.c.id.in_(wanted)
                        )
                    )
                )
            return CodeFiles(
                project_id=run.project_id,
                thread_id=run.thread_id,
                file_ids=[i for i in wanted if i in live],
            )

        return await self._db.read(tx)

    async def record_outputs(
        self, run_id: str, step_id: str, call_id: str, outputs: list[JSONDict]
    ) -> bool:
        """The call's outputs onto the step, and one `thread.run.step.delta` carrying them (with
        their `index`, as the hosted API streams them). First writer wins; False if an earlier
        attempt recorded them already."""

        def tx(conn: Connection) -> bool:
            run_row(conn, run_id, lock=True)
            key = outputs_key(call_id)
            if events.by_key(conn, run_id, key) is not None:
                return False
            step = select_one(conn, run_steps, step_id)
            details = step.step_details
            index = -1
            for position, call in enumerate(details["tool_calls"]):
                if call["id"] == call_id:
                    call["code_interpreter"]["outputs"] = outputs
                    index = position
            conn.execute(
                update(run_steps).where(run_steps.c.id == step_id).values(step_details=details)
            )
            delta_outputs = [{"index": i} | o for i, o in enumerate(outputs)]
            delta = {
                "id": step_id,
                "object": "thread.run.step.delta",
                "delta": {
                    "step_details": {
                        "type": "tool_calls",
                        "tool_calls": [
                            {
                                "index": index,
                                "type": "code_interpreter",
                                "code_interpreter": {"outputs": delta_outputs},
                            }
                        ],
                    }
                },
            }
            # The marker is written even when the run is no longer streaming (it was cancelled
            # meanwhile): the outputs are recorded either way, exactly once.
            events.append(conn, run_id, key, "thread.run.step.delta", delta)
            return True

        return await self._db.write(tx)

    async def file_paths(self, run_id: str, paths: list[str]) -> dict[str, str]:
        """The newest File the run's thread's code wrote for each path (by its base name)."""

        def tx(conn: Connection) -> dict[str, str]:
            run = conn.execute(
                select(runs.c.project_id, runs.c.thread_id).where(runs.c.id == run_id)
            ).one()
            prefix = f"files/{run.project_id}/ci/{run.thread_id}/"
            found: dict[str, str] = {}
            for path in paths:
                file_id = conn.scalar(
                    select(files.c.id)
                    .where(
                        files.c.project_id == run.project_id,
                        files.c.purpose == "assistants_output",
                        files.c.filename == posixpath.basename(path),
                        files.c.storage_key.startswith(prefix, autoescape=True),
                    )
                    .order_by(files.c.seq.desc())
                    .limit(1)
                )
                if file_id is not None:
                    found[path] = str(file_id)
            return found

        return await self._db.read(tx)

    async def annotations(self, run_id: str, text: str) -> list[JSONDict]:
        """`file_path` annotations for the reply's `sandbox:/mnt/data/…` links to files the
        thread's code wrote (a link to anything else stays plain text)."""
        links = sandbox_links(text)
        if not links:
            return []
        found = await self.file_paths(run_id, [path for _, _, path in links])
        return [
            {
                "type": "file_path",
                "text": text[start:end],
                "start_index": start,
                "end_index": end,
                "file_path": {"file_id": found[path]},
            }
            for start, end, path in links
            if path in found
        ]

    async def pending_images(self, run_id: str) -> list[str]:
        """Images this run's code displayed that none of its messages shows yet."""

        def tx(conn: Connection) -> list[str]:
            shown: set[str] = set()
            for (content,) in conn.execute(
                select(messages.c.content).where(messages.c.run_id == run_id)
            ):
                for block in content or []:
                    if block.get("type") == "image_file":
                        shown.add(block["image_file"]["file_id"])
            images: list[str] = []
            for (details,) in conn.execute(
                select(run_steps.c.step_details)
                .where(run_steps.c.run_id == run_id, run_steps.c.type == "tool_calls")
                .order_by(run_steps.c.seq)
            ):
                for call in details.get("tool_calls") or []:
                    if call.get("type") != "code_interpreter":
                        continue
                    for output in call["code_interpreter"].get("outputs") or []:
                        if output.get("type") == "image":
                            file_id = output["image"]["file_id"]
                            if file_id not in shown:
                                images.append(file_id)
            return images

        return await self._db.read(tx)

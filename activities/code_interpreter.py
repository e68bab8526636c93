"""code_interpreter activities: claim a thread's session host, run code there, close it.

A session is a kernel process on one sandbox host, so each sandbox worker process polls two task
queues (see `sandbox_workers`): the shared one (`ci_claim`: which host serves this thread?) and
its own `<queue>@<host id>` (`ci_execute`, `ci_close` for the sessions it holds). The thread's
record of its host is `CodeSessionWorkflow`, which `ci_claim` reaches with update-with-start.

`ci_execute` runs exactly once (the workflow gives it one attempt): it puts the thread's files
under /mnt/data, runs the code, turns displayed images and files the code wrote into
`assistants_output` Files, and records `{logs, image}` outputs on the step with the delta that
streams them. Bytes go from blob storage to the sandbox and back; only ids cross Temporal.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import posixpath
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from assistants.files import BlobStorage
from assistants.sandbox import (
    ExecutionResult,
    SandboxBackend,
    SandboxError,
    SandboxSession,
    SandboxUnavailable,
)
from assistants.store import Store
from assistants.store.code_interpreter import CodeInterpreterStore, output_key
from assistants.store.files import new_file_id
from workflows.code_shared import (
    CLAIM_UPDATE,
    SESSION_WORKFLOW,
    ClaimInput,
    CloseInput,
    ExecuteInput,
    ExecuteResult,
    LostInput,
    SessionParams,
    session_workflow_id,
)

log = structlog.get_logger(__name__)

# Files the code writes that are turned into Files after one execution, at most.
MAX_OUTPUT_FILES = 10
MAX_OUTPUT_FILE_BYTES = 50 * 1024 * 1024


def host_queue_name(shared_queue: str) -> str:
    """This process's own queue: a restarted worker gets a new one, so calls for a session that
    died with the old process are never picked up by a process that lacks it."""
    return f"{shared_queue}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def sandbox_filename(name: str, taken: set[str]) -> str:
    """A file's name under /mnt/data: its base name, made safe, and unique in the session."""
    base = posixpath.basename(name.replace("\\", "/")) or "file"
    base = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", base).lstrip(".") or "file"
    candidate, stem, ext, n = base, *posixpath.splitext(base), 1
    while candidate in taken:
        candidate = f"{stem}-{n}{ext}"
        n += 1
    return candidate


@dataclass
class _Session:
    sandbox: SandboxSession
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inputs: dict[str, str] = field(default_factory=dict)  # file id -> name under /mnt/data
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class CodeInterpreterActivities:
    """The activities of one sandbox host (one per worker process that serves sandboxes)."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStorage,
        backend: SandboxBackend,
        client: Client,
        *,
        workflow_task_queue: str,
        host_queue: str,
        idle_s: float,
        max_lifetime_s: float,
    ) -> None:
        self._store = store
        self._ci = CodeInterpreterStore(store.db)
        self._blobs = blobs
        self._backend = backend
        self._client = client
        self._workflow_queue = workflow_task_queue
        self.host_queue = host_queue
        self._idle_s = idle_s
        self._max_lifetime_s = max_lifetime_s
        self._sessions: dict[str, _Session] = {}
        self._starting: dict[str, asyncio.Lock] = {}

    @activity.defn(name="ci_claim")
    async def claim(self, claim: ClaimInput) -> str:
        """The host queue of the thread's session: the live one, or this host's."""
        try:
            await self._backend.check()
        except SandboxUnavailable as error:
            raise ApplicationError(
                str(error), type="SandboxUnavailable", non_retryable=True
            ) from None
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            SESSION_WORKFLOW,
            SessionParams(
                thread_id=claim.thread_id,
                idle_s=self._idle_s,
                max_lifetime_s=self._max_lifetime_s,
            ),
            id=session_workflow_id(claim.thread_id),
            task_queue=self._workflow_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        host: str = await self._client.execute_update_with_start_workflow(
            CLAIM_UPDATE,
            ClaimInput(thread_id=claim.thread_id, candidate_queue=self.host_queue),
            start_workflow_operation=start,
            result_type=str,
        )
        return host

    @activity.defn(name="ci_close")
    async def close(self, request: CloseInput) -> None:
        session = self._sessions.pop(request.thread_id, None)
        if session is not None:
            async with session.lock:
                await session.sandbox.close()
            log.info("code_interpreter session closed", thread_id=request.thread_id)

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            await session.sandbox.close()
        self._sessions.clear()

    async def _session(self, thread_id: str) -> _Session:
        lock = self._starting.setdefault(thread_id, asyncio.Lock())
        async with lock:
            session = self._sessions.get(thread_id)
            if session is not None and session.sandbox.alive:
                return session
            if session is not None:
                await session.sandbox.close()
            sandbox = await self._backend.start_session(f"{thread_id}-{uuid.uuid4().hex[:8]}")
            session = _Session(sandbox)
            self._sessions[thread_id] = session
            log.info("code_interpreter session started", thread_id=thread_id)
            return session

    @activity.defn(name="ci_execute")
    async def execute(self, call: ExecuteInput) -> ExecuteResult:
        bound = log.bind(
            run_id=call.run_id,
            thread_id=call.thread_id,
            call_id=call.call_id,
            request_id=call.request_id,
        )
        if await self._ci.recorded(call.run_id, call.call_id):
            return ExecuteResult(status="recorded")
        stored = await self._ci.code_call(call.step_id, call.call_id)
        code = stored["input"]
        async with heartbeating():
            try:
                session = await self._session(call.thread_id)
            except (SandboxError, SandboxUnavailable) as error:
                bound.warning("sandbox could not start", error=str(error))
                await self._record(call, f"[session lost: the sandbox could not start: {error}]")
                return ExecuteResult(status="lost")
            async with session.lock:
                files = await self._ci.code_files(call.run_id)
                await self._put_inputs(session, files.project_id, files.file_ids)
                bound.info("code execution")
                result = await session.sandbox.execute(code, timeout_s=call.timeout_s)
                outputs = await self._outputs(session, files.project_id, call.thread_id, result)
            await self._ci.record_outputs(call.run_id, call.step_id, call.call_id, outputs)
            if result.status == "lost" or not session.sandbox.alive:
                self._sessions.pop(call.thread_id, None)
                await session.sandbox.close()
            bound.info("code executed", status=result.status, seconds=round(result.duration_s, 3))
            return ExecuteResult(status=result.status)

    async def _record(self, call: ExecuteInput, logs: str) -> None:
        await self._ci.record_outputs(
            call.run_id, call.step_id, call.call_id, [{"type": "logs", "logs": logs}]
        )

    async def _put_inputs(self, session: _Session, project_id: str, file_ids: list[str]) -> None:
        missing = [f for f in file_ids if f not in session.inputs]
        if not missing:
            return
        records = await self._store.files.records(project_id, missing)
        taken = set(session.inputs.values())
        for file_id in missing:
            record = records.get(file_id)
            if record is None:
                continue
            name = sandbox_filename(record.filename, taken)
            taken.add(name)
            data = await self._blobs.read(record.storage_key)
            await session.sandbox.put_file(name, data)
            session.inputs[file_id] = name
        # What is there now is not output.
        for entry in await session.sandbox.list_files():
            session.seen[entry.path] = (entry.size, entry.mtime_ns)

    async def _outputs(
        self, session: _Session, project_id: str, thread_id: str, result: ExecutionResult
    ) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        if result.logs:
            outputs.append({"type": "logs", "logs": result.logs})
        for png in result.images:
            file_id = await self._save(project_id, thread_id, "image.png", png, "image/png")
            outputs.append({"type": "image", "image": {"file_id": file_id}})
        # Files the code wrote (or changed) under /mnt/data become Files too; they are not shown
        # on the step (the hosted API does not either), the model links them by path.
        try:
            listing = await session.sandbox.list_files()
        except SandboxError:
            return outputs
        written = 0
        for entry in listing:
            stamp = (entry.size, entry.mtime_ns)
            if session.seen.get(entry.path) == stamp:
                continue
            session.seen[entry.path] = stamp
            if written >= MAX_OUTPUT_FILES or entry.size > MAX_OUTPUT_FILE_BYTES:
                continue
            try:
                data = await session.sandbox.read_file(entry.path, max_bytes=MAX_OUTPUT_FILE_BYTES)
            except (SandboxError, ValueError):
                continue
            content_type = mimetypes.guess_type(entry.path)[0] or "application/octet-stream"
            name = posixpath.basename(entry.path)
            await self._save(project_id, thread_id, name, data, content_type)
            written += 1
        return outputs

    async def _save(
        self, project_id: str, thread_id: str, filename: str, data: bytes, content_type: str
    ) -> str:
        """An `assistants_output` File (bytes to blob storage first, then the row)."""
        file_id = new_file_id()
        key = output_key(project_id, thread_id, file_id)
        await self._blobs.put(key, _chunks(data))
        await self._store.files.create(
            project_id,
            file_id=file_id,
            filename=filename,
            purpose="assistants_output",
            size=len(data),
            content_type=content_type,
            sha256=hashlib.sha256(data).hexdigest(),
            storage_key=key,
        )
        return file_id


class CodeRecordActivities:
    """Runs on the run's own worker (a local activity): the call whose host vanished."""

    def __init__(self, store: Store) -> None:
        self._ci = CodeInterpreterStore(store.db)

    @activity.defn(name="ci_record_lost")
    async def record_lost(self, lost: LostInput) -> None:
        await self._ci.record_outputs(
            lost.run_id, lost.step_id, lost.call_id, [{"type": "logs", "logs": lost.message}]
        )

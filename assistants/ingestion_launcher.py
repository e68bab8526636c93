"""Starting and cancelling ingestion workflows, and scheduling vector-store expiry, from the API.

As with runs, the route writes the rows first and starts the workflow after the commit; a start
that fails (the API dies in between, Temporal is briefly unreachable) leaves the rows marked "not
started", and the sweeper here starts them later. Starts are idempotent (deterministic workflow
ids; a duplicate is rejected), so a slow start and the sweeper never ingest a file twice.

Cancels are best effort by design: the store has already recorded the outcome (`cancelled`, or the
rows are gone) and deleted the chunks, and every write an in-flight ingestion makes is conditional
on its row, so a cancel that does not arrive only means the workflow notices at its next write.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from assistants.config import Settings
from assistants.store import Store
from assistants.store.vector_store_files import FileJob, IngestionPlan
from workflows.ingestion_shared import (
    EXPIRY_CHANGED_SIGNAL,
    EXPIRY_WORKFLOW,
    FILE_BATCH_WORKFLOW,
    INGEST_FILE_WORKFLOW,
    ExpiryInput,
    FileBatchInput,
    FileRef,
    IngestFileInput,
    IngestionOptions,
    batch_workflow_id,
    expiry_workflow_id,
    ingest_workflow_id,
)
from workflows.search_attributes import ingestion_attributes

log = structlog.get_logger(__name__)
RPC_TIMEOUT = timedelta(seconds=5)


class IngestionLauncher:
    def __init__(self, settings: Settings, store: Store, client: Client) -> None:
        self._settings = settings
        self._store = store
        self.client = client

    def options(self) -> IngestionOptions:
        s = self._settings
        return IngestionOptions(
            heartbeat_timeout_s=s.ingestion_heartbeat_timeout_s,
            retry_initial_s=s.model_retry_initial_interval_s,
            retry_max_interval_s=s.model_retry_max_interval_s,
            retry_max_attempts=s.model_retry_max_attempts,
            concurrency=s.ingestion_concurrency,
            search_attributes=s.search_attributes,
        )

    async def launch(self, plan: IngestionPlan) -> None:
        """Carry out what a committed write planned: cancel superseded work, then start."""
        store = plan.vector_store_id
        for job in plan.cancel:
            await self._cancel(ingest_workflow_id(store, job.file_id, job.generation))
        for batch_id in plan.cancel_batches:
            await self._cancel(batch_workflow_id(batch_id))
        if plan.start and plan.batch_id is not None:
            await self.start_batch(plan.project_id, plan.vector_store_id, plan.batch_id, plan.start)
        else:
            for job in plan.start:
                await self.start_file(plan.project_id, plan.vector_store_id, job)
        if plan.schedule_expiry:
            await self.schedule_expiry(plan.vector_store_id)
        if plan.end_expiry:
            await self._end_expiry(plan.vector_store_id)

    async def start_file(self, project_id: str, vector_store_id: str, job: FileJob) -> None:
        attributes = None
        if self._settings.search_attributes:
            attributes = ingestion_attributes(
                project_id=project_id, vector_store_id=vector_store_id, file_id=job.file_id
            )
        started = await self._start(
            INGEST_FILE_WORKFLOW,
            IngestFileInput(
                project_id=project_id,
                vector_store_id=vector_store_id,
                file_id=job.file_id,
                generation=job.generation,
                options=self.options(),
            ),
            ingest_workflow_id(vector_store_id, job.file_id, job.generation),
            summary=f"ingest {job.file_id} into {vector_store_id}",
            attributes=attributes,
        )
        if started:
            await self._store.ingestion.mark_file_started(vector_store_id, job)

    async def start_batch(
        self, project_id: str, vector_store_id: str, batch_id: str, jobs: list[FileJob]
    ) -> None:
        attributes = None
        if self._settings.search_attributes:
            attributes = ingestion_attributes(
                project_id=project_id, vector_store_id=vector_store_id
            )
        started = await self._start(
            FILE_BATCH_WORKFLOW,
            FileBatchInput(
                project_id=project_id,
                vector_store_id=vector_store_id,
                batch_id=batch_id,
                files=[FileRef(job.file_id, job.generation) for job in jobs],
                options=self.options(),
            ),
            batch_workflow_id(batch_id),
            summary=f"ingest batch {batch_id} ({len(jobs)} files) into {vector_store_id}",
            attributes=attributes,
        )
        if started:
            await self._store.ingestion.mark_batch_started(batch_id)

    async def _start(
        self,
        workflow: str,
        arg: object,
        workflow_id: str,
        *,
        summary: str,
        attributes: TypedSearchAttributes | None,
    ) -> bool:
        """True once the workflow is known to exist (started now, or earlier)."""
        try:
            await self.client.start_workflow(
                workflow,
                arg,
                id=workflow_id,
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=attributes,
                # What the Temporal UI shows: ids only.
                static_summary=summary,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return True  # the sweeper (or a retried start) got there first
        except RPCError as error:
            log.warning(
                "ingestion start failed; the sweeper will retry",
                workflow_id=workflow_id,
                error=str(error),
            )
            return False
        return True

    async def _cancel(self, workflow_id: str) -> None:
        try:
            await self.client.get_workflow_handle(workflow_id).cancel(rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: never started, or finished
                log.warning("ingestion cancel failed", workflow_id=workflow_id, error=str(error))

    async def schedule_expiry(self, vector_store_id: str) -> None:
        """Start the store's expiry timer, or tell the running one its policy changed."""
        try:
            await self.client.start_workflow(
                EXPIRY_WORKFLOW,
                ExpiryInput(vector_store_id),
                id=expiry_workflow_id(vector_store_id),
                task_queue=self._settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal=EXPIRY_CHANGED_SIGNAL,
                static_summary=f"expiry of {vector_store_id}",
                rpc_timeout=RPC_TIMEOUT,
            )
        except RPCError as error:
            log.warning(
                "expiry scheduling failed; the sweeper will retry",
                vector_store_id=vector_store_id,
                error=str(error),
            )
            return
        await self._store.vector_stores.mark_expiry_scheduled(vector_store_id)

    async def _end_expiry(self, vector_store_id: str) -> None:
        """The store was deleted: wake its timer, which finds the store gone and ends (left
        alone, it would end the same way at `expires_at`)."""
        handle = self.client.get_workflow_handle(expiry_workflow_id(vector_store_id))
        try:
            await handle.signal(EXPIRY_CHANGED_SIGNAL, rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                log.warning("expiry wake-up failed", vector_store_id=vector_store_id)

    async def sweep(self) -> int:
        """Start what the API committed but could not start."""
        batches, files = await self._store.ingestion.unstarted(self._settings.requeue_after_s)
        for batch in batches:
            if batch.jobs:
                await self.start_batch(
                    batch.project_id, batch.vector_store_id, batch.batch_id, batch.jobs
                )
            else:
                await self._store.ingestion.mark_batch_started(batch.batch_id)
        for pending in files:
            await self.start_file(pending.project_id, pending.vector_store_id, pending.job)
        stores = await self._store.vector_stores.unscheduled_expiries()
        for vector_store_id in stores:
            await self.schedule_expiry(vector_store_id)
        return len(batches) + len(files) + len(stores)

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a store or Temporal hiccup
                log.exception("ingestion sweeper failed")
            await asyncio.sleep(self._settings.requeue_after_s)

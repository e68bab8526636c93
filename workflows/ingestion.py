"""Ingestion workflows: a file into a vector store, a batch of files, and a store's expiry.

`IngestFileWorkflow` (id `ingest-<store>-<file>-<generation>`) runs the steps of one file:
parse (cached per file and parser version; an unparsable file is not retried), index (chunk,
embed, upsert chunks by deterministic id; checkpointed by heartbeat so a retry after a crash
resumes where it stopped), commit (`in_progress → completed` with the usage, conditional: a cancel
that got there first wins). On failure or cancellation a cleanup marks the file `failed` with
OpenAI's `last_error` code (or leaves the API's `cancelled`) and removes this generation's chunks.

`FileBatchWorkflow` (id `ingest-<batch>`) runs one child per file, a few at a time. Cancelling it
(`POST …/cancel`, after the API has already marked the files `cancelled`) cancels the children.

`VectorStoreExpiryWorkflow` (id `expire-<store>`) is the store's durable expiry: a timer to
`expires_at`, re-armed when use of the store (or a changed policy) has moved it.

Workflows orchestrate only; every read and write is an activity. Statuses live in the store's rows,
never in the workflows: the API derives `file_counts` from the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.ingestion import IngestionActivities
    from workflows.ingestion_shared import (
        EMBEDDING_ERROR,
        EXPIRY_CHANGED_SIGNAL,
        EXPIRY_WORKFLOW,
        FILE_BATCH_WORKFLOW,
        INGEST_FILE_WORKFLOW,
        NOT_ACTIVE,
        PARSER_ERROR,
        CleanupInput,
        CommitInput,
        ExpiryInput,
        FileBatchInput,
        IngestFileInput,
        IngestStep,
        ingest_workflow_id,
    )
    from workflows.search_attributes import ingestion_attributes

# Store writes are short and idempotent: local activities, retried patiently but bounded.
STATE_TIMEOUT = timedelta(seconds=30)
STATE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=100,
)
PARSE_TIMEOUT = timedelta(minutes=30)
INDEX_TIMEOUT = timedelta(hours=6)


@workflow.defn(name=INGEST_FILE_WORKFLOW)
class IngestFileWorkflow:
    @workflow.run
    async def run(self, job: IngestFileInput) -> str:
        step = IngestStep(job.vector_store_id, job.file_id, job.generation)
        o = job.options
        try:
            await workflow.execute_activity_method(
                IngestionActivities.parse_file,
                step,
                start_to_close_timeout=PARSE_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=o.heartbeat_timeout_s),
                # A parser crash is retried twice; a file found unsupported or invalid never is.
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=o.retry_initial_s),
                    maximum_attempts=3,
                    non_retryable_error_types=["unsupported_file", "invalid_file", NOT_ACTIVE],
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"parse {job.file_id}",
            )
            indexed = await workflow.execute_activity_method(
                IngestionActivities.index_file,
                step,
                start_to_close_timeout=INDEX_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=o.heartbeat_timeout_s),
                # Embedding-endpoint 408/429/5xx and crashes are retried (honouring Retry-After
                # through the error's next_retry_delay); each retry resumes from the checkpoint.
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=o.retry_initial_s),
                    maximum_interval=timedelta(seconds=o.retry_max_interval_s),
                    maximum_attempts=o.retry_max_attempts,
                    non_retryable_error_types=["invalid_file", "server_error", NOT_ACTIVE],
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"chunk, embed and index {job.file_id}",
            )
            committed = await workflow.execute_local_activity_method(
                IngestionActivities.commit_file,
                CommitInput(step, indexed.usage_bytes),
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary=f"commit {indexed.chunks} chunks",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                await self._cleanup(step, None, None)
                raise asyncio.CancelledError() from None
            code, message = _failure(error)
            await self._cleanup(step, code, message)
            return "superseded" if code is None else "failed"
        except asyncio.CancelledError:
            # The API cancelled (and already recorded) it, or an operator did: remove what this
            # generation wrote. The cleanup is a new activity, not affected by the cancellation.
            await self._cleanup(step, None, None)
            raise
        return "completed" if committed else "cancelled"

    @staticmethod
    async def _cleanup(step: IngestStep, code: str | None, message: str | None) -> None:
        await workflow.execute_local_activity_method(
            IngestionActivities.cleanup_file,
            CleanupInput(step, code, message),
            start_to_close_timeout=STATE_TIMEOUT,
            retry_policy=STATE_RETRY,
            summary=f"clean up: {code or 'stopped'}",
        )


def _failure(error: ActivityError) -> tuple[str | None, str]:
    """The file's `last_error` (code, message) for an activity that gave up; code None when the
    row had moved on (nothing to record)."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        if cause.type == NOT_ACTIVE:
            return None, cause.message
        if cause.type in ("unsupported_file", "invalid_file"):
            return cause.type, cause.message
        if cause.type == PARSER_ERROR:
            return "invalid_file", f"The file could not be parsed: {cause.message}"
        if cause.type == EMBEDDING_ERROR:
            return "server_error", f"Embedding the file failed: {cause.message}"
        return "server_error", cause.message
    if isinstance(cause, TimeoutError):
        return "server_error", "Processing the file timed out."
    return "server_error", str(cause or error)


@workflow.defn(name=FILE_BATCH_WORKFLOW)
class FileBatchWorkflow:
    @workflow.run
    async def run(self, batch: FileBatchInput) -> None:
        slots = asyncio.Semaphore(batch.options.concurrency)

        async def ingest(file_id: str, generation: int) -> None:
            async with slots:
                attributes = None
                if batch.options.search_attributes:
                    attributes = ingestion_attributes(
                        project_id=batch.project_id,
                        vector_store_id=batch.vector_store_id,
                        file_id=file_id,
                    )
                try:
                    await workflow.execute_child_workflow(
                        IngestFileWorkflow.run,
                        IngestFileInput(
                            project_id=batch.project_id,
                            vector_store_id=batch.vector_store_id,
                            file_id=file_id,
                            generation=generation,
                            options=batch.options,
                        ),
                        id=ingest_workflow_id(batch.vector_store_id, file_id, generation),
                        static_summary=f"ingest {file_id} into {batch.vector_store_id} "
                        f"(batch {batch.batch_id})",
                        search_attributes=attributes,
                        # Should the batch end anyway, its children still clean up.
                        parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    )
                except WorkflowAlreadyStartedError:
                    pass  # already under way (started on its own); its row tells the outcome
                except ChildWorkflowError:
                    pass  # the child recorded the file's failure itself

        # return_exceptions: on a cancel, the files still waiting for a slot end at once, and
        # gather must not end with them (it would, by default): the batch ends only after the
        # children under way have finished their cancellation, cleanups included.
        await asyncio.gather(
            *(ingest(f.file_id, f.generation) for f in batch.files), return_exceptions=True
        )


@workflow.defn(name=EXPIRY_WORKFLOW)
class VectorStoreExpiryWorkflow:
    def __init__(self) -> None:
        self._changed = False

    @workflow.signal(name=EXPIRY_CHANGED_SIGNAL)
    def expiry_changed(self) -> None:
        self._changed = True

    @workflow.run
    async def run(self, job: ExpiryInput) -> str:
        # Each round costs a few history events; start afresh now and then (a store used every
        # day for years re-arms its timer that often).
        for _ in range(200):
            self._changed = False
            state = await workflow.execute_local_activity_method(
                IngestionActivities.check_expiry,
                job,
                start_to_close_timeout=STATE_TIMEOUT,
                retry_policy=STATE_RETRY,
                summary="expire the vector store if its time has come",
            )
            if state.done:
                return "expired" if state.expires_at is not None else "not expiring"
            assert state.expires_at is not None
            wait = max(1.0, state.expires_at - workflow.now().timestamp())
            when = datetime.fromtimestamp(state.expires_at, tz=UTC).isoformat()
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: self._changed,
                    timeout=timedelta(seconds=wait),
                    timeout_summary=f"expire at {when}",
                )
        workflow.continue_as_new(job)

"""The Temporal worker: build the dependencies, register `RunWorkflow` and its activities, run.

`python worker.py` and `durable-assistants worker` both land in `run_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.code_interpreter import CodeRecordActivities
from activities.file_search import FileSearchActivities
from activities.ingestion import IngestionActivities
from activities.model import ModelActivities
from activities.run_watch import RunWatch
from activities.runs import RunStateActivities
from activities.tools import ToolActivities
from activities.webhooks import WebhookActivities
from assistants.backends import ChatBackend
from assistants.backends.factory import backend_from_settings
from assistants.config import Settings
from assistants.files import BlobStorage, blob_storage_from_settings, close_blob_storage
from assistants.health import Readiness, health_server
from assistants.metrics import Metrics, prometheus_runtime
from assistants.retrieval import embedder_from_settings
from assistants.store import Store
from assistants.store.ranking import configured_weights
from assistants.temporal import client_metric_meter, connect, run_timeouts
from assistants.tools import ToolRegistry
from workflows.code_session import CodeSessionWorkflow
from workflows.ingestion import FileBatchWorkflow, IngestFileWorkflow, VectorStoreExpiryWorkflow
from workflows.run import RunWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = structlog.get_logger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    store: Store,
    backend: ChatBackend,
    tools: ToolRegistry | None = None,
    blobs: BlobStorage | None = None,
) -> Worker:
    if tools is None:
        tools = ToolRegistry.from_modules(settings.tool_module_list)
    if blobs is None:
        blobs = blob_storage_from_settings(settings)
    metrics = Metrics(client_metric_meter(client))
    # One watch per worker over the runs its local activities serve (activities/run_watch.py).
    watch = RunWatch(store.runs.statuses)
    grace_s = settings.worker_shutdown_grace_s
    model = ModelActivities(
        store,
        backend,
        settings.event_flush_interval_ms / 1000,
        tools,
        metrics=metrics,
        blobs=blobs,
        context_tokens=settings.model_context_tokens,
        completion_reserve_tokens=settings.model_completion_reserve_tokens,
        code_execution_s=settings.sandbox_execution_timeout_s,
        shutdown_grace_s=grace_s,
        watch=watch,
    )
    state = RunStateActivities(
        store,
        run_expires_after_s=settings.run_expires_after_s,
        timeouts=run_timeouts(settings),
        metrics=metrics,
        max_message_chars=settings.max_message_chars,
    )
    tool_runner = ToolActivities(
        store, tools, metrics=metrics, watch=watch, shutdown_grace_s=grace_s
    )
    webhooks = WebhookActivities(store)
    code_records = CodeRecordActivities(store)
    searches = FileSearchActivities(
        store,
        embedder_from_settings(settings),
        configured_weights(settings.search_embedding_weight, settings.search_text_weight),
        watch=watch,
        shutdown_grace_s=grace_s,
    )
    ingestion = IngestionActivities(
        store,
        blobs,
        embedder_from_settings(settings),
        checkpoint_chunks=settings.ingestion_checkpoint_chunks,
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            RunWorkflow,
            IngestFileWorkflow,
            FileBatchWorkflow,
            VectorStoreExpiryWorkflow,
            CodeSessionWorkflow,
            WebhookDeliveryWorkflow,
        ],
        activities=[
            model.generate,
            state.record_run,
            state.finish,
            state.require_action,
            state.apply_tool_outputs,
            state.record_tool_output,
            state.complete_tool_step,
            tool_runner.run_tool,
            webhooks.deliver,
            ingestion.parse_file,
            ingestion.index_file,
            ingestion.commit_file,
            ingestion.cleanup_file,
            ingestion.check_expiry,
            code_records.record_lost,
            searches.search,
        ],
        # On SIGTERM: stop polling, give running activities this long, then cancel them (they
        # are retried on another worker).
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_s),
        max_concurrent_activities=200,
        # Model rounds are local activities (workflows/run.py), and a workflow task stays taken
        # while its local activity runs: both as many as the model calls in flight.
        max_concurrent_local_activities=200,
        max_concurrent_workflow_tasks=200,
        # Workflow code is deterministic by review and by the replay suite, which replays every
        # recorded history in the sandbox; the sandbox's per-run re-import is not paid here.
        workflow_runner=(
            SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()
        ),
    )


async def run_worker(settings: Settings) -> None:
    # The health server runs from the first moment to the last: alive (and not ready) while
    # connecting, not ready from SIGTERM on, while running activities drain.
    readiness = Readiness(worker=True)
    host, port = settings.resolved_worker_health_host, settings.worker_health_port
    async with health_server(host, port, readiness):
        await _serve(settings, readiness)


async def _serve(settings: Settings, readiness: Readiness) -> None:
    store = Store.from_url(settings.resolved_database_url)
    await store.migrate()
    tools = ToolRegistry.from_modules(settings.tool_module_list)
    runtime = prometheus_runtime(settings.api_host, settings.worker_metrics_port)
    client = await connect(settings, runtime=runtime)
    readiness.attach(store, client)
    blobs = blob_storage_from_settings(settings)
    worker = build_worker(
        client, settings, store, backend_from_settings(settings), tools, blobs=blobs
    )
    try:
        async with worker, sandbox_host_if_enabled(client, settings, store, blobs, readiness):
            readiness.watch(worker)
            log.info(
                "worker ready",
                task_queue=settings.task_queue,
                tools=[tool.name for tool in tools],
            )
            await _stop_requested()
            readiness.stopping()
            log.info("worker stopping", grace_s=settings.worker_shutdown_grace_s)
    finally:
        await close_blob_storage(blobs)
        await store.close()


def sandbox_host_if_enabled(
    client: Client,
    settings: Settings,
    store: Store,
    blobs: BlobStorage,
    readiness: Readiness | None = None,
) -> contextlib.AbstractAsyncContextManager[object]:
    """This process is also a code_interpreter sandbox host unless ASSISTANTS_SANDBOX_WORKER
    is false (sandbox_worker.py)."""
    if not settings.sandbox_worker:
        return contextlib.nullcontext()
    from sandbox_worker import sandbox_host

    return sandbox_host(client, settings, store, blobs, readiness=readiness)


async def _stop_requested() -> None:
    """Until SIGTERM or SIGINT. Handled on the loop (not as an exception thrown into whatever
    runs), so leaving `async with worker` is an orderly shutdown: stop polling, give running
    activities the grace period, cancel the rest (Temporal retries them on another worker)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def main() -> None:
    from assistants.cli import main as cli_main

    cli_main(["worker"])


if __name__ == "__main__":
    main()

"""The sandbox host: the Temporal workers that run code_interpreter code in local sandboxes.

A host polls two task queues: the shared sandbox queue (`ci_claim`: a thread's session is
assigned to the host that asks first) and its own `<queue>@<host id>` queue (`ci_execute`,
`ci_close` of the sessions it holds; a Temporal worker polls one queue, hence two workers). The
model workers need no sandbox at all: `worker` runs a host in the same process unless
`ASSISTANTS_SANDBOX_WORKER=false`, and `durable-assistants sandbox-worker` runs only a host.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.code_interpreter import CodeInterpreterActivities, host_queue_name
from assistants.config import Settings
from assistants.files import BlobStorage, blob_storage_from_settings, close_blob_storage
from assistants.health import Readiness, health_server
from assistants.sandbox import make_sandbox_backend
from assistants.store import Store

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def sandbox_host(
    client: Client,
    settings: Settings,
    store: Store,
    blobs: BlobStorage,
    *,
    readiness: Readiness | None = None,
) -> AsyncIterator[CodeInterpreterActivities]:
    backend = make_sandbox_backend(settings)
    shared_queue = settings.resolved_sandbox_task_queue
    activities = CodeInterpreterActivities(
        store,
        blobs,
        backend,
        client,
        workflow_task_queue=settings.task_queue,
        host_queue=host_queue_name(shared_queue),
        idle_s=settings.sandbox_session_idle_s,
        max_lifetime_s=settings.sandbox_session_max_lifetime_s,
    )
    grace = timedelta(seconds=settings.worker_shutdown_grace_s)
    shared = Worker(
        client,
        task_queue=shared_queue,
        activities=[activities.claim],
        graceful_shutdown_timeout=grace,
    )
    own = Worker(
        client,
        task_queue=activities.host_queue,
        activities=[activities.execute, activities.close],
        graceful_shutdown_timeout=grace,
        max_concurrent_activities=64,
    )
    try:
        async with shared, own:
            if readiness is not None:
                readiness.watch(shared, own)
            log.info("sandbox host ready", task_queue=shared_queue, host=activities.host_queue)
            yield activities
    finally:
        await activities.aclose()
        await backend.aclose()


async def run_sandbox_worker(settings: Settings) -> None:
    """`durable-assistants sandbox-worker`: a sandbox host only, for hosts apart from the model
    workers."""
    from assistants.temporal import connect
    from worker import _stop_requested

    readiness = Readiness(worker=True)
    host, port = settings.resolved_worker_health_host, settings.worker_health_port
    async with health_server(host, port, readiness):
        store = Store.from_url(settings.resolved_database_url)
        client = await connect(settings)
        readiness.attach(store, client)
        blobs = blob_storage_from_settings(settings)
        try:
            async with sandbox_host(client, settings, store, blobs, readiness=readiness):
                log.info("worker ready", task_queue=settings.resolved_sandbox_task_queue)
                await _stop_requested()
                readiness.stopping()
        finally:
            await close_blob_storage(blobs)
            await store.close()

"""The start sweeper against a real Temporal server: it starts a run whose API died between the
store write and the workflow start, and re-sends no start that Temporal has confirmed (under
load, runs stay `queued` for seconds after their workflow started, and re-sending each of them
every pass cost the API a seventh of its CPU)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus

from assistants.config import Settings
from assistants.devserver import TemporalDevServer
from assistants.launcher import RunLauncher
from assistants.store import Store
from tests.unit.test_store import run_fields


async def _queued_run(store: Store) -> dict[str, Any]:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create("p", {}, None, [])
    return await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])


async def test_the_sweeper_starts_lost_runs_and_never_resends_a_confirmed_start(
    temporal: TemporalDevServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # No worker polls this queue: the runs stay `queued`, as they do while a worker is behind.
    settings = Settings(
        database_url=url,
        temporal_address=temporal.address,
        task_queue=f"sweep-{uuid.uuid4().hex[:8]}",
        requeue_after_s=0.5,
    )
    store = Store.from_url(url)
    await store.migrate()
    client = await Client.connect(temporal.address)
    launcher = RunLauncher(settings, store, client)
    try:
        started = await _queued_run(store)
        await launcher.start(started, "p")  # the route's start, confirmed by Temporal
        lost = await _queued_run(store)  # its API died before it could start the workflow
        await asyncio.sleep(1.1)  # both are now older than requeue_after_s (whole seconds)

        assert await launcher.sweep() == 1  # only the lost one
        for run in (started, lost):
            description = await client.get_workflow_handle(run["id"]).describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
        assert await launcher.sweep() == 0  # its start is confirmed now, too

        # Another API process's sweeper knows neither: it sends each once (Temporal rejects the
        # duplicates), and never again.
        other = RunLauncher(settings, store, client)
        assert await other.sweep() == 2
        assert await other.sweep() == 0
        assert {r.id for r in await store.runs.stale_queued(0.5)} == {started["id"], lost["id"]}
    finally:
        for run_id in (started["id"], lost["id"]):
            await client.get_workflow_handle(run_id).terminate(reason="test over")
        await store.close()

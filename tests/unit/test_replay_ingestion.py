"""Safe upgrades of the ingestion workflows: the recorded histories in
`tests/replay/ingestion_histories/` replay against the current `workflows/ingestion.py` without a
non-determinism error. A store's expiry timer sleeps for days and a batch can take hours, so a
deploy always meets some of them in flight. Runs locally (no Temporal server); re-record with
`.venv/bin/python -m tests.replay.record_ingestion` (only on purpose: see tests/replay/README.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.replay import INGESTION_HISTORIES_DIR, INGESTION_SCENARIOS
from workflows.ingestion import FileBatchWorkflow, IngestFileWorkflow, VectorStoreExpiryWorkflow


def _load(name: str) -> WorkflowHistory:
    data = json.loads((INGESTION_HISTORIES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(started["workflowId"], data)
    assert history.events[-1].HasField("workflow_execution_completed_event_attributes"), name
    return history


async def test_recorded_ingestion_histories_replay_deterministically() -> None:
    histories = {name: _load(name) for name in INGESTION_SCENARIOS}
    names = {history.run_id: name for name, history in histories.items()}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories.values():
            yield history

    replayer = Replayer(
        workflows=[IngestFileWorkflow, FileBatchWorkflow, VectorStoreExpiryWorkflow]
    )
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    failures = {names.get(run, run): error for run, error in results.replay_failures.items()}
    assert not failures, (
        "the ingestion workflows no longer replay these recorded histories, so ingestions in "
        "flight during a deploy would fail (use workflow.patched()):\n"
        + "\n".join(f"  {name}.json: {error}" for name, error in sorted(failures.items()))
    )

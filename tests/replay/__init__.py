"""Replay tests: recorded histories of representative `RunWorkflow` runs, replayed against the
current workflow code on every CI run (see README.md in this directory)."""

from __future__ import annotations

from pathlib import Path

HISTORIES_DIR = Path(__file__).parent / "histories"
# Every scenario as recorded before a `workflow.patched` change, kept (and replayed) for as long
# as runs started before the patch can be in flight: the patch id → its folder.
BEFORE_PATCH_DIRS: dict[str, Path] = {
    # Model rounds were regular activities (`generate` scheduled, started, completed).
    "model-round-local": HISTORIES_DIR / "before-model-round-local",
    # Every run called `finish_run`, also when the model's answer had already ended it.
    "answer-ends-run": HISTORIES_DIR / "before-answer-ends-run",
    # Webhook deliveries were activities of the run's workflow, which waited for them.
    "detached-webhooks": HISTORIES_DIR / "before-detached-webhooks",
    # file_search calls were regular activities (`file_search` scheduled, started, completed).
    "file-search-local": HISTORIES_DIR / "before-file-search-local",
    # A tool step the worker answered was completed by `complete_tool_step` (a local activity).
    "tool-step-in-next-round": HISTORIES_DIR / "before-tool-step-in-next-round",
}

# One recorded history per scenario, `histories/<name>.json`; `tests.replay.record` records them
# all, and `tests/unit/test_replay.py` fails if one of them is missing.
SCENARIOS: tuple[str, ...] = (
    "plain",
    "streamed",
    "tool_round_trip",
    "tool_round_trip_streamed",
    "registered_tools",
    "registered_tool_error",
    "cancelled",
    "cancelled_in_requires_action",
    "expired",
    "failed",
    "crash_recovered",
    "child_workflow",
    "code_interpreter",
    "file_search",
    "webhooks",
    "local_tools",
)

# The ingestion workflows' histories (`IngestFileWorkflow`, `FileBatchWorkflow`,
# `VectorStoreExpiryWorkflow`), recorded by `tests.replay.record_ingestion` and replayed by
# `tests/unit/test_replay_ingestion.py`.
INGESTION_HISTORIES_DIR = Path(__file__).parent / "ingestion_histories"
INGESTION_SCENARIOS: tuple[str, ...] = ("ingest_file", "ingest_unsupported", "file_batch", "expiry")

# The scenarios with a tool round the worker answers (registered tools, searches, code).
TOOL_ROUNDS_ANSWERED_BY_THE_WORKER: tuple[str, ...] = (
    "registered_tools",
    "registered_tool_error",
    "code_interpreter",
    "file_search",
    "local_tools",
)

# The scenarios each `BEFORE_PATCH_DIRS` folder holds: a patch's folder holds the scenarios that
# take its branch, recorded just before it (a scenario added later has no recording from before
# the older patches).
BEFORE_PATCH_SCENARIOS: dict[str, tuple[str, ...]] = {
    "model-round-local": SCENARIOS[: SCENARIOS.index("file_search") + 1],
    "answer-ends-run": SCENARIOS[: SCENARIOS.index("file_search") + 1],
    "detached-webhooks": ("webhooks",),
    "file-search-local": ("file_search",),
    "tool-step-in-next-round": TOOL_ROUNDS_ANSWERED_BY_THE_WORKER,
}

# The webhook deliveries' own histories (`WebhookDeliveryWorkflow`), recorded with the run that
# started them (`histories/deliveries/<scenario>.json`) and replayed by `tests/unit/test_replay.py`.
DELIVERY_HISTORIES_DIR = HISTORIES_DIR / "deliveries"

"""Safe upgrades: the recorded histories in `tests/replay/histories/` replay against the current
`RunWorkflow` code without a non-determinism error, so a change that would break in-flight runs
fails here. That includes the histories recorded before each `workflow.patched` change, which
must take the old branch. Runs locally (no Temporal server); see tests/replay/README.md."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.replay import (
    BEFORE_PATCH_DIRS,
    BEFORE_PATCH_SCENARIOS,
    DELIVERY_HISTORIES_DIR,
    HISTORIES_DIR,
    SCENARIOS,
    TOOL_ROUNDS_ANSWERED_BY_THE_WORKER,
)
from workflows.file_search_calls import FILE_SEARCH_LOCAL
from workflows.run import (
    ANSWER_ENDS_RUN,
    DETACHED_WEBHOOKS,
    MODEL_ROUND_LOCAL,
    TOOL_STEP_IN_NEXT_ROUND,
    RunWorkflow,
)
from workflows.webhook_delivery import DELIVERY_WORKFLOW_NAME, WebhookDeliveryWorkflow

RECORD = ".venv/bin/python -m tests.replay.record"


def _files(folder: Path = HISTORIES_DIR) -> list[Path]:
    return sorted(folder.glob("*.json"))


def _all_files() -> list[Path]:
    return _files() + [path for folder in BEFORE_PATCH_DIRS.values() for path in _files(folder)]


def _label(path: Path) -> str:
    return str(path.relative_to(HISTORIES_DIR).with_suffix(""))


def _marker_data(history: WorkflowHistory, name: str, detail: str) -> list[Any]:
    """The decoded JSON of the SDK's own markers named `name` (plain by design)."""
    return [
        json.loads(payload.data)
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        and event.marker_recorded_event_attributes.marker_name == name
        for payload in event.marker_recorded_event_attributes.details[detail].payloads
    ]


def _patches(history: WorkflowHistory) -> set[str]:
    """The patch ids the recorded run's `workflow.patched` calls marked."""
    return {data["id"] for data in _marker_data(history, "core_patch", "patch-data")}


def _local_activity_types(history: WorkflowHistory) -> set[str]:
    return {data["activity_type"] for data in _marker_data(history, "core_local_activity", "data")}


def _activity_types(history: WorkflowHistory) -> set[str]:
    return {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }


def _load(path: Path) -> WorkflowHistory:
    """A history as `WorkflowHistory.to_json()` wrote it; its workflow id (= the run id) is read
    from the start event, which the JSON export keeps."""
    data = json.loads(path.read_text(encoding="utf-8"))
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started["workflowId"], data)


def _reason(error: Exception) -> str:
    """The core SDK's failure messages (`[TMPRL1100] Nondeterminism error: …`, then any causes),
    not its whole dump."""
    messages = re.findall(r'message: "((?:[^"\\]|\\.)*)"', str(error))
    return f"{type(error).__name__}: {' <- '.join(messages) if messages else error}"


def test_every_scenario_has_a_complete_history() -> None:
    expected = {HISTORIES_DIR: SCENARIOS} | {
        folder: BEFORE_PATCH_SCENARIOS[patch] for patch, folder in BEFORE_PATCH_DIRS.items()
    }
    for folder, scenarios in expected.items():
        present = {path.stem for path in _files(folder)}
        missing = [name for name in scenarios if name not in present]
        assert not missing, f"missing histories {missing} in {folder}: run `{RECORD}`"
    for path in _all_files():
        history = _load(path)
        assert history.workflow_id.startswith("run_"), path.name
        last = history.events[-1]
        assert last.HasField("workflow_execution_completed_event_attributes"), (
            f"{path.name} is not the history of a completed workflow"
        )


def test_both_sides_of_the_model_round_patch_are_recorded() -> None:
    """The current recordings carry the patch's marker and call the model as a local activity
    (and, after a client's tool outputs, as a regular one); the ones from before the patch
    only ever as a regular activity. So the replay below covers every branch of
    `RunWorkflow._generate`."""
    client_rounds = {"tool_round_trip", "tool_round_trip_streamed"}
    for path in _files():
        history = _load(path)
        assert MODEL_ROUND_LOCAL in _patches(history), path.name
        assert "generate" in _local_activity_types(history), path.name
        assert ("generate" in _activity_types(history)) == (path.stem in client_rounds), path.name
    for path in _files(BEFORE_PATCH_DIRS[MODEL_ROUND_LOCAL]):
        history = _load(path)
        assert MODEL_ROUND_LOCAL not in _patches(history), path.name
        assert "generate" not in _local_activity_types(history), path.name
        assert "generate" in _activity_types(history), path.name


def test_both_sides_of_the_file_search_patch_are_recorded() -> None:
    """Since the patch, each file_search call is a local activity; before it, a regular one.
    Only a run that searches reaches the patch."""
    for path in _files():
        history = _load(path)
        searches = path.stem == "file_search"
        assert (FILE_SEARCH_LOCAL in _patches(history)) == searches, path.name
        assert ("file_search" in _local_activity_types(history)) == searches, path.name
        assert "file_search" not in _activity_types(history), path.name
    for path in _files(BEFORE_PATCH_DIRS[FILE_SEARCH_LOCAL]):
        history = _load(path)
        assert FILE_SEARCH_LOCAL not in _patches(history), path.name
        assert "file_search" not in _local_activity_types(history), path.name
        assert "file_search" in _activity_types(history), path.name


def test_both_sides_of_the_tool_step_patch_are_recorded() -> None:
    """Since the patch, the round after a tool round the worker answered completes its step
    (no `complete_tool_step`); before it, a local activity did. Runs whose tool rounds go to
    the client (or that have none) never reach the patch."""
    for path in _files():
        history = _load(path)
        answered = path.stem in TOOL_ROUNDS_ANSWERED_BY_THE_WORKER
        assert (TOOL_STEP_IN_NEXT_ROUND in _patches(history)) == answered, path.name
        assert "complete_tool_step" not in _local_activity_types(history), path.name
    for path in _files(BEFORE_PATCH_DIRS[TOOL_STEP_IN_NEXT_ROUND]):
        history = _load(path)
        assert TOOL_STEP_IN_NEXT_ROUND not in _patches(history), path.name
        assert "complete_tool_step" in _local_activity_types(history), path.name


def test_tools_registered_local_run_as_local_activities() -> None:
    """`local_tools`: the tools registered with `local=True` leave markers, the regular one
    activity events (no patch: only a policy recorded since the change says `local`)."""
    history = _load(HISTORIES_DIR / "local_tools.json")
    assert _activity_types(history) == {"run_tool"}
    markers = _marker_data(history, "core_local_activity", "data")
    assert [m["activity_type"] for m in markers].count("run_tool") == 2


def _child_workflow_types(history: WorkflowHistory) -> list[str]:
    return [
        event.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for event in history.events
        if event.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


def test_both_sides_of_the_detached_webhooks_patch_are_recorded() -> None:
    """Since the patch, a run's webhook delivery is a workflow of its own that the run starts
    and does not wait for; before it, an activity of the run's workflow. A run with no webhook
    to notify never reaches the patch."""
    for path in _files():
        history = _load(path)
        delivers = path.stem == "webhooks"
        assert (DETACHED_WEBHOOKS in _patches(history)) == delivers, path.name
        assert _child_workflow_types(history) == ([DELIVERY_WORKFLOW_NAME] if delivers else [])
        assert "deliver_webhook" not in _activity_types(history), path.name
    for path in _files(BEFORE_PATCH_DIRS[DETACHED_WEBHOOKS]):
        history = _load(path)
        assert DETACHED_WEBHOOKS not in _patches(history), path.name
        assert not _child_workflow_types(history), path.name
        assert "deliver_webhook" in _activity_types(history), path.name


async def test_recorded_webhook_deliveries_replay_deterministically() -> None:
    paths = _files(DELIVERY_HISTORIES_DIR)
    assert [p.stem for p in paths] == ["webhooks"], f"run `{RECORD} webhooks`"
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        started = data["events"][0]["workflowExecutionStartedEventAttributes"]
        assert started["workflowType"]["name"] == DELIVERY_WORKFLOW_NAME
        history = WorkflowHistory.from_json(started["workflowId"], data)
        assert "deliver_webhook" in _activity_types(history)
        replayer = Replayer(
            workflows=[WebhookDeliveryWorkflow], workflow_runner=SandboxedWorkflowRunner()
        )
        await replayer.replay_workflow(history)


def test_both_sides_of_the_answer_ends_run_patch_are_recorded() -> None:
    """Since the patch, a run that the model's answer ended calls no `finish_run` (the answer's
    commit ended it); a run that ended otherwise (cancelled, expired, failed) or whose caller
    wants its messages back (`child_workflow`) still does. Before it, every run did."""
    still_finish = {
        "cancelled",
        "cancelled_in_requires_action",
        "expired",
        "failed",
        "child_workflow",
    }
    for path in _files():
        history = _load(path)
        ended_by_answer = path.stem not in still_finish
        assert (ANSWER_ENDS_RUN in _patches(history)) == ended_by_answer, path.name
        assert ("finish_run" in _local_activity_types(history)) != ended_by_answer, path.name
    for path in _files(BEFORE_PATCH_DIRS[ANSWER_ENDS_RUN]):
        history = _load(path)
        assert ANSWER_ENDS_RUN not in _patches(history), path.name
        assert "finish_run" in _local_activity_types(history), path.name


async def test_recorded_histories_replay_deterministically() -> None:
    histories = {_label(path): _load(path) for path in _all_files()}
    assert histories, f"no histories in {HISTORIES_DIR}"
    names = {history.run_id: name for name, history in histories.items()}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories.values():
            yield history

    # In the sandbox, explicitly: production workers run unsandboxed for speed, so this is
    # where a restricted (non-deterministic) call on a recorded path is caught.
    replayer = Replayer(workflows=[RunWorkflow], workflow_runner=SandboxedWorkflowRunner())
    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    failures = {names.get(run, run): error for run, error in results.replay_failures.items()}
    for name, error in sorted(failures.items()):
        print(f"replay of {name}.json failed: {type(error).__name__}: {error}")
    assert not failures, (
        "RunWorkflow no longer replays these recorded histories, so runs in flight during a "
        "deploy would fail (use workflow.patched(); see tests/replay/README.md):\n"
        + "\n".join(f"  {name}.json: {_reason(error)}" for name, error in sorted(failures.items()))
    )

"""Observability: Prometheus metrics (Temporal SDK + ours) from the API and the worker, and request
ids carried from HTTP into the API's, the workflow's and the activities' logs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from assistants.devserver import TemporalDevServer, free_port
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack
from tests.support.stack import Stack


@pytest.fixture(scope="module", params=["sqlite"])
def observed_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="observed",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={
            "ASSISTANTS_METRICS_PORT": str(free_port()),
            "ASSISTANTS_WORKER_METRICS_PORT": str(free_port()),
        },
    ) as stack:
        yield stack


def _scrape(port: str, wanted: list[str], timeout: float = 20) -> str:
    """Prometheus text from `port`, once every `wanted` metric line is there."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            text = ""
        if all(re.search(w, text, re.MULTILINE) for w in wanted):
            return text
        time.sleep(0.3)
    missing = [w for w in wanted if not re.search(w, text, re.MULTILINE)]
    raise AssertionError(f"metrics missing {missing}:\n{text[:3000]}")


def _value(text: str, pattern: str) -> float:
    match = re.search(pattern + r"\s+([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, pattern
    return float(match.group(1))


def test_metrics_endpoints(observed_stack: Stack, model: ScriptedModel) -> None:
    stack = observed_stack
    client = stack.client()
    assistant = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "function", "function": {"name": "get_weather"}}]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    model.enqueue(
        Reply(
            tool_calls=[ToolCallSpec("get_weather", '{"city": "Oslo"}')],
            prompt_tokens=11,
            completion_tokens=5,
        ),
        Reply(text="Cold.", prompt_tokens=20, completion_tokens=2),
    )
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as s:
        s.until_done()
        assert s.get_final_run().status == "completed"

    worker = _scrape(
        stack.overrides["ASSISTANTS_WORKER_METRICS_PORT"],
        [
            r'^assistants_runs_finished\{.*status="completed".*\} ',
            r"^assistants_model_call_latency_bucket\{",
            r'^assistants_model_tokens\{.*kind="completion".*\} ',
            r'^assistants_tool_call_latency_count\{.*tool="get_weather".*\} ',
            r"^temporal_workflow_completed\{",
            r"^temporal_activity_execution_latency_bucket\{",
        ],
    )
    assert _value(worker, r'assistants_model_tokens\{[^}]*kind="prompt"[^}]*\}') >= 31
    assert _value(worker, r'assistants_model_tokens\{[^}]*kind="completion"[^}]*\}') >= 7
    assert _value(worker, r'assistants_tool_call_latency_count\{[^}]*outcome="ok"[^}]*\}') >= 1

    api = _scrape(
        stack.overrides["ASSISTANTS_METRICS_PORT"],
        [r"^assistants_event_log_lag_count\{", r"^temporal_request\{"],
    )
    # Every event of the stream was measured.
    assert _value(api, r"assistants_event_log_lag_count\{[^}]*\}") >= 5


def _log_lines(path: Any, request_id: str) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if request_id in raw and raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_request_ids_reach_workflow_and_activity_logs(
    observed_stack: Stack, model: ScriptedModel
) -> None:
    stack = observed_stack
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    model.enqueue(Reply(text="Hello."))
    response = client.beta.threads.runs.with_raw_response.create(
        thread_id=thread.id,
        assistant_id=assistant.id,
        extra_headers={"X-Request-Id": "req-from-caller-42"},
    )
    assert response.headers["x-request-id"] == "req-from-caller-42"
    run = response.parse()
    client.beta.threads.runs.poll(run.id, thread_id=thread.id)

    # Without one, the server makes one (errors included).
    with stack.http() as http:
        missing = http.get("/threads/thread_nope")
    assert missing.status_code == 404
    assert missing.headers["x-request-id"].startswith("req_")

    deadline = time.monotonic() + 10
    while True:
        worker = _log_lines(stack.workdir / "worker.log", "req-from-caller-42")
        events = {line["event"] for line in worker}
        if {"run started", "model call"} <= events or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"run started", "model call"} <= events, events
    started = next(line for line in worker if line["event"] == "run started")
    assert started["run_id"] == run.id and started["thread_id"] == thread.id
    assert started["project_id"] == "proj_default"
    assert started["temporal_workflow"]["workflow_id"] == run.id  # Temporal's context, as fields
    call = next(line for line in worker if line["event"] == "model call")
    assert call["run_id"] == run.id and call["assistant_id"] == assistant.id
    assert call["project_id"] == "proj_default"

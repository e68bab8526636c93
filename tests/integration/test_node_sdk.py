"""The official `openai` npm package against the real server.

Each test scripts the model, runs one scenario of `tests/node/scenarios.mjs` with `node` (the SDK
pointed at the stack by `OPENAI_BASE_URL` / `OPENAI_API_KEY`, as a user's program is), and checks
both what the Node SDK saw (the JSON line the scenario prints) and what the server stored (read
back with the Python SDK). `make test` installs the package (`npm ci` in `tests/node/`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import openai

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.support.stack import Stack

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
ANSWER = "A penguin is a flightless seabird of the Southern Hemisphere."


def run_node(stack: Stack, scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "the Node SDK tests need Node.js >= 20 on the PATH"
    assert (NODE_DIR / "node_modules" / "openai" / "package.json").exists(), (
        "the openai npm package is not installed: run `make test` (or `npm ci` in tests/node)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update({"OPENAI_BASE_URL": stack.base_url, "OPENAI_API_KEY": stack.api_key})
    done = subprocess.run(
        [node, "scenarios.mjs", scenario],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"node {scenario} exited {done.returncode}:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"node {scenario} printed nothing:\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_node_package_is_a_version_with_the_assistants_api() -> None:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    installed = json.loads((NODE_DIR / "node_modules" / "openai" / "package.json").read_text())
    assert lock["packages"]["node_modules/openai"]["version"] == installed["version"]
    assert installed["version"].startswith("4.")


def test_create_and_poll(stack: Stack, client: openai.OpenAI, model: ScriptedModel) -> None:
    model.enqueue(Reply(text=ANSWER, prompt_tokens=21, completion_tokens=13))
    result = run_node(stack, "create-and-poll")
    assert result["status"] == "completed"
    assert result["instructions"] == "You are a helpful assistant."
    assert result["usage"] == {"prompt_tokens": 21, "completion_tokens": 13, "total_tokens": 34}
    assert result["messages"] == [
        {"role": "user", "text": "What is a penguin?", "run_id": None},
        {"role": "assistant", "text": ANSWER, "run_id": result["run_id"]},
    ]
    # What the model was asked, and what the server keeps.
    assert model.requests[-1]["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is a penguin?"},
    ]
    stored = client.beta.threads.runs.retrieve(result["run_id"], thread_id=result["thread_id"])
    assert stored.status == "completed" and stored.completed_at is not None


def test_stream_text_deltas_and_final_run(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    # Slow enough that the text arrives in several batched deltas.
    model.enqueue(Reply(text=ANSWER, tokens_per_second=80))
    result = run_node(stack, "stream")
    assert result["status"] == "completed"
    assert "".join(result["deltas"]) == ANSWER
    assert len(result["deltas"]) >= 2 and result["text_created"] == 1
    events = result["events"]
    deltas = events.count("thread.message.delta")
    assert deltas == len(result["deltas"])
    assert events == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * deltas,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    stored = client.beta.threads.messages.list(thread_id=result["thread_id"]).data[0]
    assert result["final_messages"] == [{"id": stored.id, "text": ANSWER}]
    assert result["messages_done"] == [{"id": stored.id, "status": "completed", "text": ANSWER}]
    run = client.beta.threads.runs.retrieve(result["run_id"], thread_id=result["thread_id"])
    assert run.status == "completed"


def test_requires_action_then_submit_tool_outputs_stream(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("get_forecast", '{"city": "Oslo"}')]),
        Reply(text="It is 12 °C in Oslo.", tokens_per_second=80),
    )
    result = run_node(stack, "tool-outputs")
    assert result["waiting_status"] == "requires_action"
    [call] = result["tool_calls"]
    assert call["id"].startswith("call_")
    assert (call["name"], call["arguments"]) == ("get_forecast", '{"city": "Oslo"}')
    assert result["outputs"] == [
        {"tool_call_id": call["id"], "output": '{"city":"Oslo","celsius":12}'}
    ]
    assert result["status"] == "completed"
    assert result["text"] == "It is 12 °C in Oslo."
    first = result["first_events"]
    assert first[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert "thread.run.step.delta" in first and "thread.message.created" not in first
    assert first[-1] == "thread.run.requires_action"
    events = result["events"]
    assert events[:3] == [
        "thread.run.step.completed",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    assert "thread.run.created" not in events and "thread.message.delta" in events
    assert events[-1] == "thread.run.completed"
    assert result["steps"] == ["tool_calls", "message_creation"]
    # The output the Node program computed is what the model got back, after its own call.
    *_, call_turn, tool_turn = model.requests[-1]["messages"]
    assert call_turn["role"] == "assistant"
    assert [c["function"]["name"] for c in call_turn["tool_calls"]] == ["get_forecast"]
    assert tool_turn == {
        "role": "tool",
        "tool_call_id": call_turn["tool_calls"][0]["id"],
        "content": '{"city":"Oslo","celsius":12}',
    }
    messages = client.beta.threads.messages.list(thread_id=result["thread_id"])
    assert [m.role for m in messages] == ["assistant", "user"]


def test_auto_pagination(stack: Stack, client: openai.OpenAI) -> None:
    result = run_node(stack, "pagination")
    created = result["created"]
    assert len(created) == 7
    assert result["first_page"] == created[:3] and result["first_page_has_more"] is True
    assert result["ascending"] == created
    assert result["descending"] == created[::-1]
    assert result["pages"] == 3
    listed = [m.id for m in client.beta.threads.messages.list(thread_id=result["thread_id"])]
    assert listed == created[::-1]


def test_error_classes(stack: Stack) -> None:
    errors = run_node(stack, "errors")["errors"]
    assert errors["missing_thread"] == {
        "class": "NotFoundError",
        "status": 404,
        "message": "No thread found with id 'thread_missing'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert errors["missing_assistant"]["class"] == "NotFoundError"
    assert errors["missing_assistant"]["message"] == "No assistant found with id 'asst_missing'."
    assert errors["bad_role"]["class"] == "BadRequestError"
    assert errors["bad_role"]["status"] == 400 and errors["bad_role"]["param"] == "role"
    assert errors["bad_role"]["code"] == "invalid_value"
    assert errors["bad_key"]["class"] == "AuthenticationError"
    assert errors["bad_key"]["status"] == 401 and errors["bad_key"]["code"] == "invalid_api_key"

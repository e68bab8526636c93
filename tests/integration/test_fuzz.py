"""Fuzz every in-scope operation of the official OpenAPI document against the real stack.

For each operation, schemathesis draws a fixed set of cases: valid by the document ("positive")
and each breaking it somewhere ("negative"). Path ids are real: a seeded assistant, thread,
message, completed run and its step, and runs waiting in `requires_action` (for cancel and tool
outputs); destructive operations and run creation get fresh objects per case, so one case cannot
spoil the next. A few cases per operation keep the generated ids, to fuzz the 404 paths too.

Every third valid body also gets a lone UTF-16 surrogate in one of its strings (a value or a
nested key): refused with a 400, or stored and served back, but never a 500 now or on a later read.

Every answer must hold to `tests.support.fuzzing.check`: no 5xx, OpenAI-shaped errors, 2xx bodies
and streamed events valid against the document. Every object a 2xx returns is read back and must
validate again (nothing is stored that cannot be served), and the lists are read after each
operation (one bad row must not poison them). Runs the cases started are waited for, so nothing
of this module is still talking to the scripted model when the next test scripts it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import pytest
from schemathesis import GenerationMode

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.support import fuzzing
from tests.support.contract import validate
from tests.support.stack import Stack

POSITIVE = 16  # cases per operation that takes a body or query parameters
NEGATIVE = 16
PATH_ONLY = 4  # cases for an operation whose only inputs are path ids (seeded)
KEEP_GENERATED_IDS_EVERY = 4  # every 4th case keeps schemathesis' own (unknown, odd) path ids
LONE_SURROGATE_EVERY = 3  # every 3rd valid body gets a lone surrogate in one of its strings
ACTIVE = {"queued", "in_progress", "cancelling"}
# Every other valid body of these asks for a stream, the rest do not (operation ids, typo too).
STREAMABLE = {"createRun", "createThreadAndRun", "submitToolOuputsToRun"}

READ_BACK = {
    "assistant": "/assistants/{id}",
    "thread": "/threads/{id}",
    "thread.message": "/threads/{thread_id}/messages/{id}",
    "thread.run": "/threads/{thread_id}/runs/{id}",
    "file": "/files/{id}",
    "vector_store": "/vector_stores/{id}",
}
SCHEMA_OF = {
    "assistant": "AssistantObject",
    "thread": "ThreadObject",
    "thread.message": "MessageObject",
    "thread.run": "RunObject",
    "file": "OpenAIFile",
    "vector_store": "VectorStoreObject",
}


@dataclass
class World:
    http: httpx.Client
    ids: dict[str, str]  # path parameter name -> a real id
    runs: set[tuple[str, str]] = field(default_factory=set)  # (thread_id, run_id) started
    sent: int = 0  # requests sent, follow-ups included

    def count(self, request: httpx.Request) -> None:
        self.sent += 1

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def new_assistant(self) -> str:
        return str(self.post("/assistants", {"model": "gpt-4o"})["id"])

    def new_thread(self) -> str:
        return str(self.post("/threads", {})["id"])

    def new_message(self) -> str:
        message = {"role": "user", "content": "bye"}
        return str(self.post(f"/threads/{self.ids['thread_id']}/messages", message)["id"])

    def new_file(self) -> str:
        files = {"file": ("notes.txt", b"Penguins cannot fly.", "text/plain")}
        response = self.http.post("/files", data={"purpose": "assistants"}, files=files)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def new_vector_store(self) -> str:
        return str(self.post("/vector_stores", {"name": "fuzz"})["id"])

    def run_until(self, run: dict[str, Any], status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while run["status"] != status:
            assert run["status"] in ACTIVE and time.monotonic() < deadline, run
            time.sleep(0.05)
            run = self.http.get(f"/threads/{run['thread_id']}/runs/{run['id']}").json()
        return run


def _waiting_run(world: World, model: ScriptedModel, assistant_id: str) -> dict[str, Any]:
    """A run (on a thread of its own) stopped in `requires_action` on one call to `lookup`."""
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]))
    run = world.post(f"/threads/{world.new_thread()}/runs", {"assistant_id": assistant_id})
    return world.run_until(run, "requires_action")


@pytest.fixture(scope="module")
def world(stack: Stack, model: ScriptedModel) -> Iterator[World]:
    model.reset()
    with stack.http() as http:
        world = World(http=http, ids={})
        http.event_hooks["request"].append(world.count)
        assistant = world.post("/assistants", {"model": "gpt-4o", "name": "fuzz target"})
        tools = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
        tooled = world.post("/assistants", {"model": "gpt-4o", "tools": [tools]})
        thread_id = world.new_thread()
        message = world.post(f"/threads/{thread_id}/messages", {"role": "user", "content": "Hi"})
        run = world.post(f"/threads/{thread_id}/runs", {"assistant_id": assistant["id"]})
        run = world.run_until(run, "completed")
        steps = http.get(f"/threads/{thread_id}/runs/{run['id']}/steps").json()["data"]
        cancel = _waiting_run(world, model, tooled["id"])
        submit = _waiting_run(world, model, tooled["id"])
        submit_stream = _waiting_run(world, model, tooled["id"])
        if fuzzing.in_scope("/files"):
            world.ids["file_id"] = world.new_file()
        if fuzzing.in_scope("/vector_stores"):
            world.ids["vector_store_id"] = world.new_vector_store()
        world.ids |= {
            "assistant_id": assistant["id"],
            "modified_assistant_id": world.new_assistant(),
            "thread_id": thread_id,
            "message_id": message["id"],
            "run_id": run["id"],
            "step_id": steps[0]["id"],
            "cancel_thread_id": cancel["thread_id"],
            "cancel_run_id": cancel["id"],
            "submit_thread_id": submit["thread_id"],
            "submit_run_id": submit["id"],
            "tool_call_id": _call_id(submit),
            # Streamed submissions go to a run of their own, so each kind can succeed once.
            "submit_stream_thread_id": submit_stream["thread_id"],
            "submit_stream_run_id": submit_stream["id"],
            "stream_tool_call_id": _call_id(submit_stream),
        }
        yield world
        # The cancel and tool-output targets may still wait for outputs.
        world.runs |= {(run["thread_id"], run["id"]) for run in (cancel, submit, submit_stream)}
        _settle(world)


def _call_id(run: dict[str, Any]) -> str:
    return str(run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"])


def _path_ids(
    world: World, label: str, generated: dict[str, Any], stream: bool | None
) -> dict[str, Any]:
    """Real ids for the case's path; fresh objects where the operation destroys or locks."""
    ids = world.ids
    submit = "submit_stream" if stream else "submit"
    table: dict[str, dict[str, Callable[[], str]]] = {
        "DELETE /assistants/{assistant_id}": {"assistant_id": world.new_assistant},
        "POST /assistants/{assistant_id}": {"assistant_id": lambda: ids["modified_assistant_id"]},
        "DELETE /threads/{thread_id}": {"thread_id": world.new_thread},
        "POST /threads/{thread_id}/runs": {"thread_id": world.new_thread},
        "DELETE /threads/{thread_id}/messages/{message_id}": {"message_id": world.new_message},
        "DELETE /files/{file_id}": {"file_id": world.new_file},
        "DELETE /vector_stores/{vector_store_id}": {"vector_store_id": world.new_vector_store},
        "POST /threads/{thread_id}/runs/{run_id}/cancel": {
            "thread_id": lambda: ids["cancel_thread_id"],
            "run_id": lambda: ids["cancel_run_id"],
        },
        "POST /threads/{thread_id}/runs/{run_id}/submit_tool_outputs": {
            "thread_id": lambda: ids[f"{submit}_thread_id"],
            "run_id": lambda: ids[f"{submit}_run_id"],
        },
    }
    fresh = table.get(label, {})
    out = dict(generated)
    for name in generated:
        if name in fresh:
            out[name] = fresh[name]()
        elif name in ids:  # a parameter with no seed (`batch_id`) stays generated
            out[name] = ids[name]
    return out


def _seed_ids(world: World, value: Any) -> None:
    """Ids anywhere inside a body point at real objects (where there is one to point at)."""
    if isinstance(value, list):
        for item in value:
            _seed_ids(world, item)
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key in ("assistant_id", "file_id", "vector_store_id") and isinstance(item, str):
            value[key] = world.ids.get(key, item)
        elif key in ("file_ids", "vector_store_ids") and isinstance(item, list):
            seed = world.ids.get(key[:-1])
            value[key] = [seed if seed and isinstance(i, str) else i for i in item]
        else:
            _seed_ids(world, item)


def _seed_body(world: World, label: str, case: fuzzing.FuzzCase, stream: bool | None) -> None:
    """Ids inside bodies point at real objects, so valid bodies can succeed; `stream` (unless
    None) says whether the body asks for a stream."""
    body = fuzzing.body_of(case)
    if not isinstance(body, dict):
        return
    _seed_ids(world, body)
    if stream is not None and (stream or body.get("stream") is True):
        body["stream"] = stream
    outputs = body.get("tool_outputs")
    if not label.endswith("/submit_tool_outputs") or not isinstance(outputs, list):
        return
    # One output for the one pending call, so the first well-formed one completes the run (and a
    # streamed one always is: streams are rare among generated cases).
    first = outputs[0] if outputs else {}
    if isinstance(first, dict) and (outputs or stream):
        call_id = world.ids["stream_tool_call_id" if stream else "tool_call_id"]
        body["tool_outputs"] = [{"output": "42", **first, "tool_call_id": call_id}]


def _read_back(world: World, obj: Any) -> list[str]:
    if not isinstance(obj, dict) or obj.get("object") not in READ_BACK or obj.get("deleted"):
        return []
    if obj["object"] == "thread.run":
        world.runs.add((obj["thread_id"], obj["id"]))
    path = READ_BACK[obj["object"]].format_map(obj)
    response = world.http.get(path)
    if response.status_code == 404:  # deleted by a later case, or the thread of a run is gone
        return []
    if response.status_code != 200:
        return [f"read back {obj['object']}: {response.status_code} {response.text[:200]}"]
    try:
        validate(SCHEMA_OF[obj["object"]], response.json())
    except (jsonschema.ValidationError, ValueError) as error:
        return [f"read back {obj['object']} fails the spec: {str(error)[:200]}"]
    return []


def _read_lists(world: World) -> list[str]:
    problems = []
    thread = world.ids["thread_id"]
    for path, schema in [
        ("/assistants", "ListAssistantsResponse"),
        (f"/threads/{thread}/messages", "ListMessagesResponse"),
        (f"/threads/{thread}/runs", "ListRunsResponse"),
    ]:
        response = world.http.get(path, params={"limit": 100})
        if response.status_code != 200:
            problems.append(f"list {path}: {response.status_code} {response.text[:200]}")
            continue
        try:
            validate(schema, response.json())
        except (jsonschema.ValidationError, ValueError) as error:
            problems.append(f"list {path} fails {schema}: {str(error)[:200]}")
    return problems


def _settle(world: World, timeout: float = 60) -> list[str]:
    """Wait until no run started here is still active; cancel any left waiting for outputs.
    The scripted model answers every request, so a run that fails failed on our side."""
    problems = []
    deadline = time.monotonic() + timeout
    for thread_id, run_id in sorted(world.runs):
        path = f"/threads/{thread_id}/runs/{run_id}"
        while True:
            response = world.http.get(path)
            run = response.json() if response.status_code == 200 else {}
            status = run.get("status")
            if status == "requires_action":
                world.http.post(f"{path}/cancel")
            elif status == "failed":
                problems.append(f"a run failed: {run.get('last_error')}")
                break
            elif status not in ACTIVE:
                break
            if time.monotonic() > deadline:
                problems.append(f"run {run_id} still {status} after {timeout} s")
                break
            time.sleep(0.05)
    world.runs.clear()
    return problems


@pytest.mark.parametrize("label", fuzzing.fuzzed_operations(), ids=fuzzing.operation_id)
def test_fuzz(label: str, stack: Stack, world: World) -> None:
    op = fuzzing.operation(label)
    if fuzzing.has_inputs(op):
        cases = fuzzing.draw_cases(op, GenerationMode.POSITIVE, POSITIVE)
        positive = len(cases)
        cases += fuzzing.draw_cases(op, GenerationMode.NEGATIVE, NEGATIVE)
    else:
        cases = fuzzing.draw_cases(op, GenerationMode.POSITIVE, PATH_ONLY)
        positive = len(cases)
    failures: dict[str, list[str]] = {}  # problem -> the requests that showed it
    statuses: Counter[str] = Counter()
    sent_before = world.sent
    for index, case in enumerate(cases):
        if index % KEEP_GENERATED_IDS_EVERY != KEEP_GENERATED_IDS_EVERY - 1:
            streamable = index < positive and fuzzing.operation_id(label) in STREAMABLE
            stream = index % 2 == 1 if streamable else None
            generated = dict(case.path_parameters or {})
            case.path_parameters = _path_ids(world, label, generated, stream)
            _seed_body(world, label, case, stream)
        request = fuzzing.build_request(case, stack.base_url)
        body = fuzzing.body_of(case)
        if body is not None and index < positive and index % LONE_SURROGATE_EVERY == 2:
            spoiled = fuzzing.with_lone_surrogate(body, index // LONE_SURROGATE_EVERY)
            request.content = json.dumps(spoiled).encode()  # (schemathesis cannot hold it)
        objects: list[Any] = []
        try:
            response = fuzzing.send(world.http, request)
        except httpx.HTTPError as error:
            failures.setdefault(f"no answer: {type(error).__name__}", []).append(request.describe())
            continue
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        statuses[f"{response.status_code} (stream)" if streamed else str(response.status_code)] += 1
        problems = fuzzing.check(
            op, response, objects.append, stream_requested=fuzzing.stream_requested(case)
        )
        latest = {(o.get("object"), o.get("id")): o for o in objects if isinstance(o, dict)}
        for obj in latest.values():
            problems += _read_back(world, obj)
        for problem in problems:
            failures.setdefault(problem, []).append(request.describe())
    for problem in _read_lists(world) + _settle(world):
        failures.setdefault(problem, []).append("(after the cases)")
    sent = world.sent - sent_before
    print(f"{label}: {len(cases)} cases, {sent} requests, {dict(sorted(statuses.items()))}")
    report = "\n".join(
        f"- {problem} ({len(requests)}x), e.g. {requests[0]}"
        for problem, requests in failures.items()
    )
    assert not failures, f"{label}: {len(cases)} cases\n{report}"

"""Payload encryption end to end, on real processes: with `ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS` set,
the Temporal history of a run holds only ciphertext (read here with a client that has no codec),
the codec server (`durable-assistants codec-server`) decrypts it back, and rotating the key ring
under a waiting run keeps it working: the restarted worker replays history written with the old
key, new payloads use the new key, and the old ones stay readable only with the old key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import httpx
import openai
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from openai.types.beta.threads import Run
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

from assistants.codec import ENCODING, KEY_ID_METADATA, data_converter, generate_key
from assistants.devserver import TemporalDevServer, free_port
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from assistants.trigger import MessageInput, RunRequest, RunResult, start_run
from tests.conftest import started_stack
from tests.support.messages import text_of
from tests.support.stack import Stack
from workflows.search_attributes import THREAD_ID
from workflows.shared import RunInput

KEY_A = generate_key()
KEY_B = generate_key()
RING_A = f"a:{KEY_A}"
RING_B = f"b:{KEY_B}"
RING_BA = f"{RING_B},{RING_A}"
KEYS_SETTING = "ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS"
TIMEOUT_S = 120.0

LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "lookup_record",
        "description": "Look a record up in the client's system",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}

T = TypeVar("T")


def _secret(kind: str) -> str:
    return f"{kind}-SECRET-{uuid.uuid4().hex}"


@pytest.fixture(scope="module", params=["sqlite"])
def encrypted_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="encryption",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={KEYS_SETTING: RING_A},
    ) as stack:
        yield stack


@pytest.fixture(params=["sqlite"])
def rotation_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A stack of its own: the rotation test restarts it with another key ring."""
    with started_stack(
        request,
        name="encryption-rotation",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={KEYS_SETTING: RING_A},
    ) as stack:
        yield stack


# --- helpers --------------------------------------------------------------------------------


async def _eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _wait_status(
    client: openai.AsyncOpenAI, thread_id: str, run_id: str, statuses: set[str]
) -> Run:
    async def probe() -> Run | None:
        run = await client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        return run if run.status in statuses else None

    return await _eventually(probe, f"run {run_id} to reach {statuses}")


def _payloads(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every `Payload` inside a proto message (an event), with its field path."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        name = f"{path}.{field.name}" if path else field.name
        if field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from _payloads(item, f"{name}[{key}]")
        elif isinstance(value, Message):
            yield from _payloads(value, name)
        else:
            for index, item in enumerate(value):
                yield from _payloads(item, f"{name}[{index}]")


class Found(NamedTuple):
    event_id: int
    kind: str  # the event type without its EVENT_TYPE_ prefix
    path: str
    payload: Payload

    @property
    def encrypted(self) -> bool:
        return self.payload.metadata.get("encoding") == ENCODING


def _all_payloads(history: WorkflowHistory) -> list[Found]:
    found = []
    for event in history.events:
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        for path, payload in _payloads(event):
            found.append(Found(event.event_id, kind, path, payload))
    return found


def _is_bookkeeping(found: Found) -> bool:
    """Payloads that are plain by design: search attributes (ids and statuses that Temporal
    indexes) and the SDK's own marker data: a local activity's (sequence, activity type,
    times) and a `workflow.patched` marker's (the patch id)."""
    return ".search_attributes.indexed_fields[" in found.path or found.path in (
        "marker_recorded_event_attributes.details[data].payloads[0]",
        "marker_recorded_event_attributes.details[patch-data].payloads[0]",
    )


def _event(history: WorkflowHistory, event_type: EventType.ValueType) -> HistoryEvent:
    (event,) = [e for e in history.events if e.event_type == event_type]
    return event


def _started_input(history: WorkflowHistory) -> list[Payload]:
    started = _event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    return list(started.workflow_execution_started_event_attributes.input.payloads)


def _result(history: WorkflowHistory) -> list[Payload]:
    completed = _event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    return list(completed.workflow_execution_completed_event_attributes.result.payloads)


def _key_id(payload: Payload) -> str:
    assert payload.metadata["encoding"] == ENCODING, dict(payload.metadata)
    return payload.metadata[KEY_ID_METADATA].decode()


def _assert_not_in_history(history: WorkflowHistory, secrets: list[str]) -> None:
    """Not in the JSON export, nor in the raw event bytes. The JSON check alone proves nothing:
    it base64-encodes payload data, so plain text would not show there either; in the serialized
    events a `json/plain` payload holds the text verbatim."""
    as_json = history.to_json()
    for secret in secrets:
        assert secret not in as_json
        for event in history.events:
            assert secret.encode() not in event.SerializeToString(), (secret, event.event_type)


async def _plain_history(temporal: TemporalDevServer, run_id: str) -> WorkflowHistory:
    """The history as anyone with access to Temporal sees it: no codec, no keys."""
    raw = await Client.connect(temporal.address)
    return await raw.get_workflow_handle(run_id).fetch_history()


async def _closed_history(temporal: TemporalDevServer, run_id: str) -> WorkflowHistory:
    """`_plain_history` once the workflow has closed. A run is `completed` over HTTP as soon as
    its answer is committed, and the SDK's poll helpers return right then (held polls): the
    workflow closes a moment later."""
    raw = await Client.connect(temporal.address)
    handle = raw.get_workflow_handle(run_id)
    deadline = time.monotonic() + TIMEOUT_S
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, f"workflow {run_id} still running"
        await asyncio.sleep(0.05)
    return await handle.fetch_history()


@contextlib.contextmanager
def _codec_server(stack: Stack, token: str) -> Iterator[str]:
    """`durable-assistants codec-server` as a subprocess with the stack's settings (its keys)."""
    port = free_port()
    env = {
        **stack.env(),
        "ASSISTANTS_CODEC_SERVER_PORT": str(port),
        "ASSISTANTS_CODEC_SERVER_TOKEN": token,
    }
    log_path = stack.workdir / "codec-server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "assistants.cli", "codec-server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the codec server exited; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                httpx.post(f"{url}/decode", json={"payloads": []}, timeout=2)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the codec server did not start; see {log_path}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the tests ------------------------------------------------------------------------------


async def test_history_holds_only_ciphertext(
    encrypted_stack: Stack, temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    stack = encrypted_stack
    user_secret, arg_secret = _secret("PLAINTEXT"), _secret("ARG")
    out_secret, reply_secret = _secret("OUT"), _secret("REPLY")
    client = stack.async_client()
    assistant = await client.beta.assistants.create(
        model="gpt-4o", instructions="Use the tool.", tools=[LOOKUP]
    )
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("lookup_record", json.dumps({"query": arg_secret}))]),
        Reply(text=f"The record says {reply_secret}."),
    )

    writer = await Client.connect(temporal.address, data_converter=data_converter(RING_A))
    handle = await start_run(
        writer,
        RunRequest(
            project_id="default",
            assistant_id=assistant.id,
            messages=[MessageInput("user", f"Look up {user_secret}, please.")],
        ),
        task_queue=stack.task_queue,
    )
    run_id = handle.id

    async def thread_of_run() -> str | None:
        return (await handle.describe()).typed_search_attributes.get(THREAD_ID) or None

    thread_id = await _eventually(thread_of_run, "the run to be recorded")
    waiting = await _wait_status(client, thread_id, run_id, {"requires_action", "failed"})
    assert waiting.status == "requires_action", waiting.last_error
    assert waiting.required_action is not None
    (call,) = waiting.required_action.submit_tool_outputs.tool_calls
    assert json.loads(call.function.arguments) == {"query": arg_secret}
    done = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run_id,
        thread_id=thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": f"record: {out_secret}"}],
        poll_interval_ms=100,
    )
    assert done.status == "completed", done.last_error

    # The secrets really went through the run: the model saw all three inputs.
    seen = json.dumps(model.requests)
    assert user_secret in seen and arg_secret in seen and out_secret in seen

    # A client with the key reads the result, which carries the reply.
    reader = await Client.connect(temporal.address, data_converter=data_converter(RING_A))
    result = await asyncio.wait_for(
        reader.get_workflow_handle(run_id, result_type=RunResult).result(), TIMEOUT_S
    )
    assert result.status == "completed" and result.thread_id == thread_id
    assert any(reply_secret in text for text in result.messages), result.messages

    # The run is an ordinary run over HTTP.
    runs = await client.beta.threads.runs.list(thread_id=thread_id)
    assert [(r.id, r.status) for r in runs.data] == [(run_id, "completed")]
    messages = await client.beta.threads.messages.list(thread_id=thread_id, order="asc")
    texts = [(m.role, text_of(m)) for m in messages.data]
    assert texts == [
        ("user", f"Look up {user_secret}, please."),
        ("assistant", f"The record says {reply_secret}."),
    ]

    # The raw history, read without a codec: ciphertext only.
    history = await _plain_history(temporal, run_id)
    _assert_not_in_history(history, [user_secret, arg_secret, out_secret, reply_secret])
    (started_input,) = _started_input(history)
    assert started_input.metadata["encoding"] == b"binary/encrypted"
    assert started_input.metadata["encryption-key-id"] == b"a"
    assert set(started_input.metadata) == {"encoding", "encryption-key-id"}
    # ... and the texts are in there, encrypted: the input holds the message, the result the reply.
    codec = data_converter(RING_A)
    (run_input,) = await codec.decode([started_input], [RunInput])
    assert isinstance(run_input, RunInput) and run_input.request is not None
    assert user_secret in run_input.request.messages[0].content
    (decoded_result,) = await codec.decode(_result(history), [RunResult])
    assert decoded_result == result

    # Every payload is ciphertext under key `a`, but for the search attributes (ids and the
    # status, indexed by Temporal) and the SDK's own local-activity bookkeeping.
    payloads = _all_payloads(history)
    unencrypted = [f for f in payloads if not f.encrypted]
    assert unencrypted and all(_is_bookkeeping(f) for f in unencrypted), unencrypted
    encrypted = [f for f in payloads if f.encrypted]
    assert {_key_id(f.payload) for f in encrypted} == {"a"}
    assert {f.kind for f in encrypted} >= {
        "WORKFLOW_EXECUTION_STARTED",
        "MARKER_RECORDED",  # the local activities' results, the model rounds' among them
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "WORKFLOW_EXECUTION_COMPLETED",
    }

    # Without the key, the result cannot be read.
    raw = await Client.connect(temporal.address)
    with pytest.raises(KeyError, match="Unknown payload encoding binary/encrypted"):
        await raw.get_workflow_handle(run_id, result_type=RunResult).result()


async def test_the_codec_server_decrypts_the_history(
    encrypted_stack: Stack, temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    stack = encrypted_stack
    user_secret, reply_secret = _secret("PLAINTEXT"), _secret("REPLY")
    client = stack.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    model.enqueue(Reply(text=f"Noted: {reply_secret}"))
    writer = await Client.connect(temporal.address, data_converter=data_converter(RING_A))
    handle = await start_run(
        writer,
        RunRequest(
            project_id="default",
            assistant_id=assistant.id,
            messages=[MessageInput("user", f"Remember {user_secret}")],
        ),
        task_queue=stack.task_queue,
    )
    result = await asyncio.wait_for(handle.result(), TIMEOUT_S)
    assert result.status == "completed" and result.messages == [f"Noted: {reply_secret}"]

    history = await _plain_history(temporal, handle.id)
    _assert_not_in_history(history, [user_secret, reply_secret])
    started = _event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    body = json_format.MessageToDict(started.workflow_execution_started_event_attributes.input)
    (sent,) = body["payloads"]
    assert set(sent) == {"metadata", "data"}
    assert base64.b64decode(sent["metadata"]["encoding"]) == ENCODING
    assert base64.b64decode(sent["metadata"][KEY_ID_METADATA]) == b"a"
    assert user_secret.encode() not in base64.b64decode(sent["data"])
    completed = _event(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    result_body = json_format.MessageToDict(
        completed.workflow_execution_completed_event_attributes.result
    )

    token = f"codec-token-{uuid.uuid4().hex}"
    with _codec_server(stack, token) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            refused = await http.post("/decode", json=body)
            assert refused.status_code == 401, refused.text
            auth = {"Authorization": f"Bearer {token}"}
            wrong = await http.post("/decode", json=body, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401, wrong.text

            response = await http.post("/decode", json=body, headers=auth)
            assert response.status_code == 200, response.text
            (decoded,) = response.json()["payloads"]
            assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
            run_input = json.loads(base64.b64decode(decoded["data"]))
            assert run_input["run_id"] == handle.id
            assert run_input["request"]["messages"] == [
                {"role": "user", "content": f"Remember {user_secret}"}
            ]

            response = await http.post("/decode", json=result_body, headers=auth)
            assert response.status_code == 200, response.text
            (decoded,) = response.json()["payloads"]
            run_result = json.loads(base64.b64decode(decoded["data"]))
            assert run_result["status"] == "completed"
            assert run_result["messages"] == [f"Noted: {reply_secret}"]


async def test_key_rotation_under_a_waiting_run(
    rotation_stack: Stack, temporal: TemporalDevServer, model: ScriptedModel
) -> None:
    stack = rotation_stack
    user_secret, reply_secret = _secret("PLAINTEXT"), _secret("REPLY")
    client = stack.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o", tools=[LOOKUP])
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": f"Find {user_secret}"}]
    )
    model.enqueue(
        Reply(tool_calls=[ToolCallSpec("lookup_record", '{"query": "x"}')]),
        Reply(text=f"Found {reply_secret}"),
    )
    run = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=100
    )
    assert run.status == "requires_action", run.last_error
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    before = await _plain_history(temporal, run.id)
    assert {_key_id(f.payload) for f in _all_payloads(before) if f.encrypted} == {"a"}

    def rotate() -> None:
        stack.overrides[KEYS_SETTING] = RING_BA
        stack.kill_workers()
        stack.start_worker()
        stack.kill_api()
        stack.start_api()

    await asyncio.to_thread(rotate)

    # The new worker has no cache: it replays the history written with key `a`, then goes on.
    done = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "42"}],
        poll_interval_ms=100,
    )
    assert done.status == "completed", done.last_error
    messages = await client.beta.threads.messages.list(thread_id=thread.id)
    assert text_of(messages.data[0]) == f"Found {reply_secret}"

    history = await _closed_history(temporal, run.id)
    _assert_not_in_history(history, [user_secret, reply_secret])
    payloads = _all_payloads(history)
    assert all(_is_bookkeeping(f) for f in payloads if not f.encrypted)
    encrypted = [f for f in payloads if f.encrypted]
    key_ids = [_key_id(f.payload) for f in encrypted]
    # Key `a` up to the restart, key `b` from then on, never mixed.
    first_b = key_ids.index("b")
    assert set(key_ids[:first_b]) == {"a"} and set(key_ids[first_b:]) == {"b"}, key_ids
    assert encrypted[first_b].event_id > before.events[-1].event_id
    by_kind = {f.kind: _key_id(f.payload) for f in encrypted}
    assert by_kind["WORKFLOW_EXECUTION_STARTED"] == "a"
    assert by_kind["WORKFLOW_EXECUTION_UPDATE_ACCEPTED"] == "b"  # sent by the restarted API
    assert by_kind["WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == "b"
    assert by_kind["WORKFLOW_EXECUTION_COMPLETED"] == "b"

    # The old input needs the old key; the new result only the new one.
    started_input = _started_input(history)
    with pytest.raises(ValueError, match="key 'a', which is not in the key ring"):
        await data_converter(RING_B).decode(started_input, [RunInput])
    (run_input,) = await data_converter(RING_BA).decode(started_input, [RunInput])
    assert isinstance(run_input, RunInput)
    assert (run_input.run_id, run_input.thread_id) == (run.id, thread.id)

    only_b = await Client.connect(temporal.address, data_converter=data_converter(RING_B))
    result = await only_b.get_workflow_handle(run.id, result_type=RunResult).result()
    assert result.status == "completed" and result.thread_id == thread.id
    only_a = await Client.connect(temporal.address, data_converter=data_converter(RING_A))
    with pytest.raises(ValueError, match="key 'b', which is not in the key ring"):
        await only_a.get_workflow_handle(run.id, result_type=RunResult).result()
    both = await Client.connect(temporal.address, data_converter=data_converter(RING_BA))
    assert await both.get_workflow_handle(run.id, result_type=RunResult).result() == result

"""Limits and input hardening end to end: request body size (413, decided before the body is
read), the model's context window (a thread may hold far more than a model reads), text that no
response could carry arriving from a model or through Temporal, and the edge values the spec
allows. Bad requests with ordinary errors are rows of `test_bad_input.py`'s table."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from assistants.config import Settings
from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from assistants.trigger import MessageInput, RunRequest, start_run
from tests.conftest import wait_for_status
from tests.support.contract import validate
from tests.support.messages import text_of
from tests.support.stack import Stack

MAX_REQUEST_BYTES: int = Settings.model_fields["max_request_bytes"].default


# --- request body size ------------------------------------------------------------------------


def _raw_exchange(stack: Stack, head: dict[str, str], body: list[bytes]) -> tuple[int, Any]:
    """One HTTP/1.1 request on a plain socket (so the test controls exactly what is sent and
    when), and the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=30) as conn:
        headers = {
            "Host": f"127.0.0.1:{stack.api_port}",
            "Authorization": f"Bearer {stack.api_key}",
            "OpenAI-Beta": "assistants=v2",
            "Content-Type": "application/json",
            **head,
        }
        lines = ["POST /v1/assistants HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in body:
            conn.sendall(piece)
        received = b""
        while b"\r\n\r\n" not in received:
            data = conn.recv(65536)
            assert data, f"connection closed before an answer: {received!r}"
            received += data
        head_bytes, rest = received.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        answer = {k.lower(): v for k, v in (h.split(": ", 1) for h in header_lines)}
        length = int(answer["content-length"])
        while len(rest) < length:
            data = conn.recv(65536)
            assert data, "connection closed mid-answer"
            rest += data
        return int(status_line.split()[1]), json.loads(rest[:length])


def _assert_too_large(status: int, body: Any) -> None:
    assert status == 413, body
    validate("ErrorResponse", body)
    assert body["error"] == {
        "message": f"The request body is too large: at most {MAX_REQUEST_BYTES} bytes are "
        "accepted.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }


def test_a_declared_oversized_body_is_refused_before_it_is_sent(stack: Stack) -> None:
    # Only the headers go out: a server that waited for the gigabyte would never answer.
    started = time.monotonic()
    status, body = _raw_exchange(stack, {"Content-Length": str(10**9)}, [])
    _assert_too_large(status, body)
    assert time.monotonic() - started < 10


def test_a_chunked_oversized_body_is_refused_while_it_streams_in(stack: Stack) -> None:
    before = len(stack.client().beta.assistants.list(limit=100).data)
    piece = b"x" * (1024 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (MAX_REQUEST_BYTES // len(piece))
    chunks.append(b"1\r\nx\r\n")  # one byte over; no terminating chunk is needed for the 413
    status, body = _raw_exchange(stack, {"Transfer-Encoding": "chunked"}, chunks)
    _assert_too_large(status, body)
    assert len(stack.client().beta.assistants.list(limit=100).data) == before


def test_a_thread_of_maximal_messages_fits_under_the_cap(stack: Stack) -> None:
    client = stack.client()
    messages: Any = [{"role": "user", "content": "é" * 256_000} for _ in range(8)]
    thread = client.beta.threads.create(messages=messages)
    stored = client.beta.threads.messages.list(thread_id=thread.id, limit=100).data
    assert [len(text_of(m)) for m in stored] == [256_000] * 8


# --- the model's context window ------------------------------------------------------------------


def _texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"]]


def test_the_model_never_gets_more_than_its_context_window(
    stack: Stack, model: ScriptedModel
) -> None:
    """Without `max_prompt_tokens`, the default `auto` truncation still fits the default window
    (128,000 tokens, less 4,096 kept for the answer, or less the run's `max_completion_tokens`)."""
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    big = [letter * 200_000 for letter in "abc"]  # about 50,000 tokens each
    messages: Any = [{"role": "user", "content": text} for text in [*big, "What now?"]]
    thread = client.beta.threads.create(messages=messages)
    model.enqueue(Reply(text="Noted."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    sent = model.requests[-1]
    # The oldest turn was dropped: 150,000 estimated tokens do not fit 123,904.
    assert _texts(sent) == [big[1], big[2], "What now?"]
    assert sum(len(text) for text in _texts(sent)) // 4 <= 128_000 - 4096
    assert len(client.beta.threads.messages.list(thread_id=thread.id).data) == 5  # all kept

    # A run that wants a long answer keeps that much room: 128,000 - 64,000 (half at most).
    model.enqueue(Reply(text="Again."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=100_000
    )
    assert run.status == "completed", run.last_error
    assert _texts(model.requests[-1]) == [big[2], "What now?", "Noted."]


def test_a_prompt_that_cannot_fit_fails_the_run_without_calling_the_model(
    stack: Stack, model: ScriptedModel
) -> None:
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o", instructions="i" * 256_000)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "m" * 256_000}])
    calls = len(model.requests)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "invalid_prompt"
    assert "does not fit the model's context window of 128000 tokens" in run.last_error.message
    assert len(model.requests) == calls


# --- text no response could carry, from sources other than a request body ----------------------


def test_lone_surrogates_from_the_model_are_repaired_before_they_are_stored(
    stack: Stack, model: ScriptedModel
) -> None:
    client = stack.client()
    assistant = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "function", "function": {"name": "lookup"}}]
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    # Seven characters a chunk: the pair 😀 (written as two halves) is split across two chunks.
    model.enqueue(Reply(text="split \ud83d\ude00 pair, lone \ud800 half", chunk_chars=7))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert text_of(message) == "split 😀 pair, lone \ufffd half"

    # The model's arguments text itself holds a lone surrogate (its JSON chunk escapes it).
    model.enqueue(Reply(tool_calls=[ToolCallSpec(name="lookup", arguments='{"q": "\ud800"}')]))
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    run = wait_for_status(client, thread.id, run.id, {"requires_action"})
    assert run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert json.loads(call.function.arguments) == {"q": "\ufffd"}
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    wait_for_status(client, thread.id, run.id, {"cancelled"})
    with stack.http() as http:
        assert http.get("/assistants", params={"limit": 100}).status_code == 200
        assert http.get(f"/threads/{thread.id}/runs/{run.id}/steps").status_code == 200


async def test_a_run_started_through_temporal_with_a_lone_surrogate_is_refused(
    stack: Stack, model: ScriptedModel, temporal: TemporalDevServer
) -> None:
    client = stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create()
    handle = await start_run(
        await Client.connect(temporal.address),
        RunRequest(
            project_id="default",
            assistant_id=assistant.id,
            thread_id=thread.id,
            messages=[MessageInput("user", "fine"), MessageInput("user", "bad \udc00")],
        ),
        task_queue=stack.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "Invalid 'messages[1].content': string contains an unpaired surrogate" in str(
        failure.value.cause
    )
    assert client.beta.threads.messages.list(thread_id=thread.id).data == []
    assert client.beta.threads.runs.list(thread_id=thread.id).data == []
    with stack.http() as http:
        assert http.get("/assistants", params={"limit": 100}).status_code == 200


# --- what the spec allows is accepted ----------------------------------------------------------


def test_edge_values_the_spec_allows_are_accepted(stack: Stack, model: ScriptedModel) -> None:
    client = stack.client()
    for effort in ("none", "minimal", "xhigh", "max"):
        assistant = client.beta.assistants.create(model="gpt-4o", reasoning_effort=effort)
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Two pictures"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            }
        ],
        tool_resources={
            "file_search": {
                "vector_stores": [
                    {
                        "file_ids": [],
                        "chunking_strategy": {
                            "type": "static",
                            "static": {"max_chunk_size_tokens": 801, "chunk_overlap_tokens": 400},
                        },
                        "metadata": {"team": "docs"},
                    }
                ]
            }
        },
    )
    model.enqueue(Reply(text="Seen."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, reasoning_effort="xhigh"
    )
    assert run.status == "completed", run.last_error
    parts = model.requests[-1]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]

    with stack.http() as http:
        # An escaped surrogate *pair* is one character, and fine.
        pair = http.post(
            "/assistants",
            content=b'{"model": "gpt-4o", "metadata": {"mood": "\\ud83d\\ude00"}}',
            headers={"Content-Type": "application/json"},
        )
        assert pair.status_code == 200, pair.text
        assert pair.json()["metadata"] == {"mood": "😀"}
        # Nesting up to 64 levels: the body, tools, the tool, the function, then 60 levels.
        deep: Any = {}
        for _ in range(59):
            deep = {"a": deep}
        created = http.post(
            "/assistants",
            json={"model": "gpt-4o", "tools": [
                {"type": "function", "function": {"name": "deep", "parameters": deep}}]},
        )  # fmt: skip
        assert created.status_code == 200, created.text
        # The highest sequence number the event log has: nothing after it, just `done`.
        with http.stream(
            "GET",
            f"/threads/{thread.id}/runs/{run.id}/events",
            headers={"Last-Event-ID": str(2**31 - 1)},
        ) as events:
            assert events.status_code == 200
            assert "".join(events.iter_text()).strip().endswith("data: [DONE]")

"""The OpenAI-compatible model backend on the wire: against the scripted model server, and against
a tiny raw HTTP/1.1 server on loopback that writes exactly the bytes a test scripts (event streams
cut between CR and LF, comments, multi-line data, error events, streams that end too early), plus
the SSE decoder fed every split of a stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from assistants.backends.base import BackendError, ChatChunk, ChatRequest, TokenUsage
from assistants.backends.openai_compatible import OpenAICompatibleBackend, endpoint
from assistants.backends.sse import Event, SSEDecoder
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "Penguins?"}])


async def collect(
    backend: OpenAICompatibleBackend, request: ChatRequest = REQUEST
) -> list[ChatChunk]:
    return [chunk async for chunk in backend.stream(request)]


async def failure(backend: OpenAICompatibleBackend) -> tuple[list[ChatChunk], BackendError]:
    """The chunks that arrived before the call failed, and its error."""
    chunks: list[ChatChunk] = []
    with pytest.raises(BackendError) as raised:
        async for chunk in backend.stream(REQUEST):
            chunks.append(chunk)
    return chunks, raised.value


def text(chunks: list[ChatChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


# --- against the scripted model server ------------------------------------------------------


@pytest.fixture
async def backend(model: ScriptedModel) -> AsyncIterator[OpenAICompatibleBackend]:
    backend = OpenAICompatibleBackend(model.base_url, "sk-test", max_tokens_param="max_tokens")
    yield backend
    await backend.close()


async def test_streams_text_finish_and_usage(
    model: ScriptedModel, backend: OpenAICompatibleBackend
) -> None:
    model.enqueue(Reply(text="Emperor penguins dive deep.", prompt_tokens=7))
    request = ChatRequest(
        model="m", messages=REQUEST.messages, temperature=0.2, max_completion_tokens=100
    )
    chunks = await collect(backend, request)
    assert text(chunks) == "Emperor penguins dive deep."
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert chunks[-1].usage == TokenUsage(prompt_tokens=7, completion_tokens=7)
    body = model.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 100 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.2 and "top_p" not in body and "tools" not in body


async def test_streams_tool_call_fragments(
    model: ScriptedModel, backend: OpenAICompatibleBackend
) -> None:
    model.enqueue(Reply(tool_calls=[ToolCallSpec("get_weather", '{"city": "Paris"}', "call_1")]))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    request = ChatRequest(model="m", messages=REQUEST.messages, tools=tools, tool_choice="auto")
    chunks = await collect(backend, request)
    deltas = [delta for chunk in chunks for delta in chunk.tool_calls]
    assert (deltas[0].index, deltas[0].id, deltas[0].name) == (0, "call_1", "get_weather")
    assert "".join(d.arguments for d in deltas) == '{"city": "Paris"}'
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]
    assert model.requests[-1]["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("status", "retryable", "code"),
    [
        (400, False, "invalid_prompt"),
        (401, False, "server_error"),
        (404, False, "server_error"),
        (408, True, "server_error"),
        (409, True, "server_error"),
        (422, False, "invalid_prompt"),
        (429, True, "rate_limit_exceeded"),
        (500, True, "server_error"),
        (503, True, "server_error"),
    ],
)
async def test_status_errors_are_classified(
    model: ScriptedModel,
    backend: OpenAICompatibleBackend,
    status: int,
    retryable: bool,
    code: str,
) -> None:
    model.enqueue(Reply(status=status, error_message=f"scripted {status}"))
    _, error = await failure(backend)
    assert (error.status, error.retryable, error.code) == (status, retryable, code)
    assert error.message == f"The model backend returned {status}: scripted {status}"
    assert error.retry_after_s is None


async def test_retry_after_is_handed_on(
    model: ScriptedModel, backend: OpenAICompatibleBackend
) -> None:
    model.enqueue(Reply(status=429, retry_after=2.5, error_message="slow down"))
    _, error = await failure(backend)
    assert error.retry_after_s == 2.5 and error.retryable


async def test_a_dropped_stream_is_retryable_and_the_next_call_works(
    model: ScriptedModel, backend: OpenAICompatibleBackend
) -> None:
    model.enqueue(Reply(text="one two three four five", drop_after_chunks=2), Reply(text="fine"))
    chunks, error = await failure(backend)
    assert text(chunks) == "one two " and error.retryable and error.status is None
    assert "connection failed" in error.message
    assert text(await collect(backend)) == "fine"


async def test_a_slow_backend_times_out_retryably(model: ScriptedModel) -> None:
    backend = OpenAICompatibleBackend(model.base_url, None, timeout_s=0.2)
    model.enqueue(Reply(text="late", ttft=2.0))
    try:
        _, error = await failure(backend)
    finally:
        await backend.close()
    assert error.retryable and "no response within 0.2s" in error.message


async def test_a_refused_connection_is_retryable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "k")
    try:
        _, error = await failure(backend)
    finally:
        await backend.close()
    assert error.retryable and error.message.startswith(
        "The model backend connection failed: ConnectError"
    )


# --- against a raw HTTP/1.1 server that writes exactly the scripted bytes ---------------------


@dataclass
class Scripted:
    """One response: `pieces` are written one by one (each its own chunk of a chunked body,
    flushed with a pause so they arrive as separate reads); `cut` closes the connection
    without ending the body; `json_body` answers a plain JSON body instead."""

    pieces: list[bytes] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    cut: bool = False


@dataclass
class Seen:
    head: bytes
    body: dict[str, object]


class RawServer:
    def __init__(self) -> None:
        self.replies: list[Scripted] = []
        self.requests: list[Seen] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # keep-alive: answer requests until the client closes
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(Seen(head, json.loads(await reader.readexactly(length))))
                reply = self.replies.pop(0)
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\ncontent-type: {reply.content_type}\r\n"
                    "transfer-encoding: chunked\r\n\r\n".encode()
                )
                for piece in reply.pieces:
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.005)
                if reply.cut:
                    return
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()


def delta(content: str | None = None, finish: str | None = None, **fields: object) -> bytes:
    chunk: dict[str, object] = {"object": "chat.completion.chunk", **fields}
    delta = {} if content is None else {"content": content}
    chunk.setdefault("choices", [{"index": 0, "delta": delta, "finish_reason": finish}])
    return json.dumps(chunk).encode()


USAGE = delta(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 2})


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    async with RawServer() as server:
        yield server


@pytest.fixture
async def raw_backend(raw: RawServer) -> AsyncIterator[OpenAICompatibleBackend]:
    backend = OpenAICompatibleBackend(raw.url, "sk-raw")
    yield backend
    await backend.close()


async def test_crlf_comments_multiline_data_and_split_reads(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    first = b"data: " + delta("Hel") + b"\r\n\r\n"
    multi = b'data: {"choices": [{"index": 0,\r\ndata: "delta": {"content": "lo"}}]}\r\n\r\n'
    raw.replies.append(
        Scripted(
            [
                b": keep-alive\r\n\r\n",
                first[:9],  # the line split mid-JSON
                first[9:-3],
                first[-3:-1],  # "\n\r": CRLF split between reads
                first[-1:],
                b"event: ping\r\n\r\n",  # an event without data is no event
                multi,
                b"data: " + delta(finish="stop") + b"\r\rdata: " + USAGE + b"\r\r",  # bare CRs
                b"data: [DONE]\r\n\r\n",
            ]
        )
    )
    chunks = await collect(raw_backend)
    assert text(chunks) == "Hello"
    assert chunks[-2].finish_reason == "stop"
    assert chunks[-1].usage == TokenUsage(prompt_tokens=3, completion_tokens=2)


async def test_the_request_and_connection_reuse(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    for word in ("one", "two", "three"):
        pieces = [b"data: " + delta(word, "stop") + b"\n\n", b"data: [DONE]\n\n"]
        raw.replies.append(Scripted(pieces))
        assert text(await collect(raw_backend)) == word
    assert raw.connections == 1  # the rest of the body after [DONE] was read: kept alive
    head = raw.requests[0].head.decode().lower()
    assert head.startswith("post /v1/chat/completions http/1.1")
    assert "authorization: bearer sk-raw" in head
    assert raw.requests[0].body["model"] == "m"


async def test_an_error_event_mid_stream_is_retryable(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    error = {
        "error": {"message": "overloaded", "type": "server_error", "code": "rate_limit_exceeded"}
    }
    raw.replies.append(
        Scripted(
            [
                b"data: " + delta("partial") + b"\n\n",
                f"event: error\ndata: {json.dumps(error)}\n\n".encode(),
            ]
        )
    )
    chunks, failed = await failure(raw_backend)
    assert text(chunks) == "partial"
    assert failed.retryable and failed.code == "rate_limit_exceeded" and failed.status is None
    assert failed.message == "The model backend failed mid-stream: overloaded"


async def test_an_error_object_in_the_data_is_retryable(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    raw.replies.append(Scripted([b'data: {"error": {"message": "boom", "code": 500}}\n\n']))
    _, failed = await failure(raw_backend)
    assert failed.retryable and failed.code == "server_error" and "boom" in failed.message


async def test_a_stream_ending_early_without_done_is_retryable(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    raw.replies.append(Scripted([b"data: " + delta("half an ans") + b"\n\n"]))  # body ends cleanly
    chunks, failed = await failure(raw_backend)
    assert text(chunks) == "half an ans"
    assert failed.retryable and "ended before [DONE]" in failed.message


async def test_a_connection_cut_mid_line_is_retryable(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    raw.replies.append(Scripted([b"data: " + delta("ok") + b'\n\ndata: {"choi'], cut=True))
    chunks, failed = await failure(raw_backend)
    assert text(chunks) == "ok" and failed.retryable and "connection failed" in failed.message


async def test_a_finished_stream_without_done_is_complete(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    # Some servers never send [DONE]; once the answer finished, the end of the body is enough
    # (here the last event also lacks its closing blank line).
    raw.replies.append(Scripted([b"data: " + delta("done", "stop") + b"\n\ndata: " + USAGE]))
    chunks = await collect(raw_backend)
    assert text(chunks) == "done" and chunks[-1].usage == TokenUsage(3, 2)


async def test_error_bodies_of_other_servers(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    ollama = Scripted([b'{"error": "model \\"x\\" not found"}'], 404, "application/json")
    html = Scripted([b"<html>Bad Gateway</html>"], 502, "text/html")
    raw.replies += [ollama, html]
    _, missing = await failure(raw_backend)
    assert missing.message == 'The model backend returned 404: model "x" not found'
    assert not missing.retryable
    _, gateway = await failure(raw_backend)
    assert gateway.message == "The model backend returned 502: HTTP 502" and gateway.retryable


async def test_a_server_that_does_not_stream(
    raw: RawServer, raw_backend: OpenAICompatibleBackend
) -> None:
    message = {"role": "assistant", "content": "Whole answer."}
    completion = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }
    raw.replies.append(Scripted([json.dumps(completion).encode()], content_type="application/json"))
    assert await collect(raw_backend) == [
        ChatChunk(text="Whole answer.", finish_reason="stop", usage=TokenUsage(4, 2))
    ]


async def test_a_query_string_in_the_base_url(raw: RawServer) -> None:
    assert endpoint("https://h/openai/v1/?api-version=2", "chat/completions") == (
        "https://h/openai/v1/chat/completions?api-version=2"
    )
    backend = OpenAICompatibleBackend(raw.url + "?api-version=2024-10-21", "k")
    raw.replies.append(Scripted([b"data: " + delta("hi", "stop") + b"\n\ndata: [DONE]\n\n"]))
    try:
        assert text(await collect(backend)) == "hi"
    finally:
        await backend.close()
    assert raw.requests[0].head.startswith(b"POST /v1/chat/completions?api-version=2024-10-21 ")


# --- the decoder on its own -------------------------------------------------------------------

STREAM = (
    b": comment\r\n"
    b'event: message\r\nid: 7\r\nretry: 10\r\ndata: {"a":\r\ndata:  1}\r\n\r\n'
    b"data:x\n\n"
    b"data: \xe2\x82\xac\r\r"  # a multi-byte character, CR line ends
    b"data: [DONE]\n\n"
)
EVENTS = [Event(b'{"a":\n 1}', "message"), Event(b"x"), Event("€".encode()), Event(b"[DONE]")]


def decode(pieces: list[bytes]) -> list[Event]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.finish()


def test_decoder_at_every_split() -> None:
    assert decode([STREAM]) == EVENTS
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut
    assert decode([bytes([b]) for b in STREAM]) == EVENTS


def test_decoder_end_of_body() -> None:
    assert decode([b"data: 1\n\ndata: 2"]) == [Event(b"1"), Event(b"2")]
    assert decode([b"event: x\n\n\n: only a comment\n"]) == []

"""A scripted, OpenAI-compatible Chat Completions server on loopback.

Why it exists: the runs engine talks to a model over HTTP with the real
``openai`` SDK, and its hard parts (streaming deltas, tool-call assembly,
usage accounting, retries on 429/5xx, mid-stream failures, many concurrent
streams) only show up on the wire.  Mocking the SDK would test our mocks, and
calling a real provider would be slow, costly and non-deterministic.  So tests
and benchmarks start this tiny server, script exactly what the "model" answers
(``enqueue(Reply(...))``), and point the SDK at ``base_url``.

It is a real HTTP server (uvicorn serving a small Starlette app) on its own
event loop in a background thread, so sync tests, async tests and plain
scripts can all use it.  Delays are ``asyncio`` sleeps, so hundreds of slow
concurrent streams cost nothing.

It also serves ``/v1/embeddings`` (deterministic hashed bag-of-words vectors, scriptable failures
with ``enqueue_embeddings(EmbeddingReply(...))``) for the configured-endpoint embeddings path.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["EmbeddingReply", "Reply", "ScriptedModel", "ToolCallSpec"]

MODEL_ID = "scripted-model"
_DEFAULT_TEXT = "Hello from the scripted model."


@dataclass
class ToolCallSpec:
    """A function tool call the scripted model makes."""

    name: str
    arguments: str  # JSON string
    id: str | None = None  # default: generated "call_<hex>"


@dataclass
class Reply:
    """What the scripted model answers to one chat completion request.

    `text` streams in chunks of `chunk_chars`, each counted as one token; a request's
    `max_completion_tokens` (or `max_tokens`) cuts a longer text there, finishing with "length",
    unless `finish_reason` is scripted.
    """

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    status: int = 200
    error_message: str = "scripted error"
    retry_after: float | None = None
    ttft: float = 0.0
    tokens_per_second: float | None = None
    chunk_chars: int = 4
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Streaming only: abort the connection after this many content chunks
    # (or after all of them, if there are fewer).
    drop_after_chunks: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_chars < 1:
            raise ValueError("chunk_chars must be at least 1")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")


@dataclass
class EmbeddingReply:
    """What the scripted model answers to one `/v1/embeddings` request.

    A 200 embeds every input deterministically: a hashed bag of its lower-cased words, unit
    length, so texts sharing words are close and a test can plant a fact and find it. Any other
    `status` answers an OpenAI-shaped error (with `Retry-After` when `retry_after` is set).
    """

    status: int = 200
    error_message: str = "scripted error"
    retry_after: float | None = None
    delay: float = 0.0


class _ScriptedDrop(Exception):
    """Raised inside a response so uvicorn cuts the connection (or answers 500)."""


class _HideScriptedDrops(logging.Filter):
    """Keeps uvicorn from logging our deliberate drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _ScriptedDrop))


_HIDE_DROPS = _HideScriptedDrops()


class ScriptedModel:
    """A loopback Chat Completions server whose answers are scripted by the test."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._cond = threading.Condition()
        self._queue: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._responder: Callable[[dict[str, Any]], Reply] | None = None
        self._in_flight = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self.default_reply = Reply(text=_DEFAULT_TEXT)
        self._embedding_queue: deque[EmbeddingReply] = deque()
        self._embedding_requests: list[dict[str, Any]] = []
        # Vector size of a scripted embedding when the request sets no `dimensions`.
        self.embedding_dimensions = 64
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ScriptedModel:
        """Bind (port 0 picks a free port) and return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("ScriptedModel is already running")
        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only
        # when the listening socket says TCP. Without it, Nagle holds each streamed chunk until
        # the client's delayed ACK (40 ms) on every kept-alive connection.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]  # kept, so a restarted server has the same URL
        logging.getLogger("uvicorn.error").addFilter(_HIDE_DROPS)
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            http="h11",
            loop="asyncio",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(server, sock),),
            name="scripted-model",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("scripted model server failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread (idempotent)."""
        server, thread, loop = self._server, self._thread, self._loop
        self._server = self._thread = self._loop = None
        if server is None or thread is None:
            return
        server.should_exit = True
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=5.0)
        if thread.is_alive():  # pragma: no cover - only with wedged connections
            server.force_exit = True
            thread.join(timeout=5.0)

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each chat completion request consumes one, in order."""
        with self._cond:
            self._queue.extend(replies)

    def set_responder(self, fn: Callable[[dict[str, Any]], Reply] | None) -> None:
        """Compute replies from the request body when the queue is empty."""
        with self._cond:
            self._responder = fn

    def enqueue_embeddings(self, *replies: EmbeddingReply) -> None:
        """Queue embeddings replies; each `/v1/embeddings` request consumes one, in order
        (with the queue empty, requests succeed)."""
        with self._cond:
            self._embedding_queue.extend(replies)

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        """Every `/v1/embeddings` request body received so far, in order."""
        with self._cond:
            return list(self._embedding_requests)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat completion request body received so far, in order."""
        with self._cond:
            return list(self._requests)

    @property
    def in_flight(self) -> int:
        """Chat completion requests currently being served (streams included)."""
        with self._cond:
            return self._in_flight

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` requests have arrived."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self._requests)}")

    def reset(self) -> None:
        """Forget queued replies, recorded requests and the responder."""
        with self._cond:
            self._queue.clear()
            self._requests.clear()
            self._responder = None
            self.default_reply = Reply(text=_DEFAULT_TEXT)
            self._embedding_queue.clear()
            self._embedding_requests.clear()
            self.embedding_dimensions = 64

    # -- HTTP ----------------------------------------------------------------

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await server.serve(sockets=[sock])

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up the response at once when the server is stopping.

        Otherwise uvicorn would wait for every slow scripted reply (or cancel it
        noisily) before ``stop()`` could return.
        """
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return
        raise _ScriptedDrop("scripted model stopping")

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts in-flight chat completions around the whole response, body included."""
        counted = scope["type"] == "http" and scope["path"] == "/v1/chat/completions"
        if counted:
            with self._cond:
                self._in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            if counted:
                with self._cond:
                    self._in_flight -= 1

    async def _models(self, request: Request) -> Response:
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "scripted"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(Reply(status=400, error_message="body must be a JSON object"))
        with self._cond:
            self._requests.append(body)
            self._cond.notify_all()
            reply = self._queue.popleft() if self._queue else None
            responder = self._responder
        if reply is None:
            reply = responder(body) if responder is not None else self.default_reply

        if reply.status != 200:
            await self._sleep(reply.ttft)
            return _error_response(reply)
        completion = _Completion(reply, body, self._sleep)
        if body.get("stream"):
            return StreamingResponse(completion.stream(), media_type="text/event-stream")
        await self._sleep(reply.ttft)
        return JSONResponse(completion.message())

    async def _embeddings(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(Reply(status=400, error_message="body must be a JSON object"))
        with self._cond:
            self._embedding_requests.append(body)
            self._cond.notify_all()
            reply = self._embedding_queue.popleft() if self._embedding_queue else EmbeddingReply()
            default_dims = self.embedding_dimensions
        await self._sleep(reply.delay)
        if reply.status != 200:
            return _error_response(
                Reply(
                    status=reply.status,
                    error_message=reply.error_message,
                    retry_after=reply.retry_after,
                )
            )
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        dims = body.get("dimensions", default_dims)
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(item, str) and item for item in inputs)
        ):
            message = "'input' must be a non-empty string or a list of non-empty strings"
            return _error_response(Reply(status=400, error_message=message))
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            return _error_response(Reply(status=400, error_message="bad 'dimensions'"))
        base64_format = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = _hashed_embedding(text, dims)
            encoded: str | list[float] = (
                base64.b64encode(_float32_bytes(vector)).decode("ascii")
                if base64_format
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(_WORD.findall(text)) for text in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or MODEL_ID),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


_WORD = re.compile(r"\w+")


def _hashed_embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector: each lower-cased word adds +-1 at a hashed coordinate."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dims] += 1.0 if (value >> 63) else -1.0
    norm = sum(x * x for x in vector) ** 0.5
    if norm == 0.0:
        vector[0] = norm = 1.0
    return [x / norm for x in vector]


def _float32_bytes(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


class _Completion:
    """Renders one scripted Reply as a chat.completion or a chunk stream."""

    def __init__(
        self, reply: Reply, body: dict[str, Any], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.reply = reply
        self.sleep = sleep
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = str(body.get("model") or MODEL_ID)
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.text_pieces = _split(reply.text, reply.chunk_chars)
        self.call_ids = [c.id or f"call_{uuid.uuid4().hex[:24]}" for c in reply.tool_calls]
        self.tool_deltas = [
            delta for i in range(len(reply.tool_calls)) for delta in self._tool_deltas(i)
        ]
        self.finish_reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        limit = _token_limit(body)
        if limit is not None and reply.finish_reason is None and len(self.text_pieces) > limit:
            # A real model stops at the request's token limit. Here one chunk is one token: the
            # answer is cut after `limit` chunks (with no tool calls) and ends with "length".
            self.text_pieces = self.text_pieces[:limit]
            self.tool_deltas = []
            self.finish_reason = "length"
        self.text = "".join(self.text_pieces)
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = _message_chars(body.get("messages")) // 4 + 1
        completion = reply.completion_tokens
        if completion is None:
            completion = max(1, len(self.text_pieces) + len(self.tool_deltas))
        self.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _tool_deltas(self, index: int) -> list[dict[str, Any]]:
        call = self.reply.tool_calls[index]
        head = {
            "index": index,
            "id": self.call_ids[index],
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        tail = [
            {"index": index, "function": {"arguments": piece}}
            for piece in _split(call.arguments, self.reply.chunk_chars)
        ]
        return [{"tool_calls": [part]} for part in [head, *tail]]

    def message(self) -> dict[str, Any]:
        reply = self.reply
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.text or not self.tool_deltas else None,
            "refusal": None,
        }
        if self.tool_deltas:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for call_id, c in zip(self.call_ids, reply.tool_calls, strict=True)
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage,
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice])

    async def stream(self) -> AsyncIterator[bytes]:
        reply = self.reply
        drop_at = None
        if reply.drop_after_chunks is not None:
            drop_at = min(reply.drop_after_chunks, len(self.text_pieces))
        await self.sleep(reply.ttft)
        yield self._delta({"role": "assistant", "content": ""})
        deltas = [{"content": piece} for piece in self.text_pieces] + self.tool_deltas
        for i, delta in enumerate(deltas):
            if i == drop_at:
                raise _ScriptedDrop
            if i and reply.tokens_per_second:
                await self.sleep(1.0 / reply.tokens_per_second)
            yield self._delta(delta)
        if drop_at is not None:
            raise _ScriptedDrop
        yield self._delta({}, self.finish_reason)
        if self.include_usage:
            yield self._chunk([], self.usage)
        yield b"data: [DONE]\n\n"


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _token_limit(body: dict[str, Any]) -> int | None:
    """The completion token limit a request sets (`max_completion_tokens`, or the older
    `max_tokens`), if any."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _message_chars(messages: object) -> int:
    """Characters of text in the request messages, for a deterministic token estimate."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return total


def _error_response(reply: Reply) -> Response:
    status = reply.status
    if status == 429:
        error_type, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        error_type, code = "server_error", None
    else:
        error_type, code = "invalid_request_error", None
    headers = {}
    if reply.retry_after is not None:
        seconds = reply.retry_after
        headers["retry-after"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    error = {"message": reply.error_message, "type": error_type, "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status, headers=headers)

"""Admission (assistants/api/admission.py): at most `limit` API requests are worked on at once,
the others wait in arrival order; a stream holds its place only until its headers are out;
uploads and health probes never wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from assistants.api.admission import AdmissionMiddleware, step_aside


class App:
    """Records which requests entered; each answers when the test lets it."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["name"]
        self.entered.append(name)
        if scope["path"].endswith("/held"):  # a poll held until its run settles
            step_aside(scope)
            step_aside(scope)  # twice: the place is given up once
        if scope["path"].endswith("/stream"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.gate(name).wait()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await self.gate(name).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def _request(
    middleware: AdmissionMiddleware, name: str, path: str, method: str = "GET"
) -> list[Message]:
    scope: dict[str, Any] = {"type": "http", "path": path, "method": method, "name": name}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_beyond_the_limit_wait_their_turn_in_order() -> None:
    app = App()
    middleware = AdmissionMiddleware(app, limit=2)
    tasks = [
        asyncio.create_task(_request(middleware, name, f"/v1/threads/{name}"))
        for name in ("a", "b", "c", "d")
    ]
    await _settle()
    assert app.entered == ["a", "b"]  # c and d wait, before any of their work
    app.gate("b").set()
    await _settle()
    assert app.entered == ["a", "b", "c"]
    app.gate("a").set()
    await _settle()
    assert app.entered == ["a", "b", "c", "d"]
    app.gate("c").set()
    app.gate("d").set()
    for task in tasks:
        sent = await task
        assert sent[0]["status"] == 200


async def test_a_stream_gives_its_place_up_once_its_headers_are_out() -> None:
    app = App()
    middleware = AdmissionMiddleware(app, limit=1)
    stream = asyncio.create_task(_request(middleware, "s", "/v1/threads/t/runs/r/stream"))
    await _settle()
    plain = asyncio.create_task(_request(middleware, "p", "/v1/threads/t"))
    await _settle()
    assert app.entered == ["s", "p"]  # the stream is still open
    app.gate("p").set()
    await plain
    app.gate("s").set()
    await stream


async def test_a_request_that_steps_aside_to_wait_lets_the_next_in() -> None:
    app = App()
    middleware = AdmissionMiddleware(app, limit=1)
    held = asyncio.create_task(_request(middleware, "h", "/v1/threads/t/runs/r/held"))
    await _settle()
    first = asyncio.create_task(_request(middleware, "p", "/v1/threads/t"))
    second = asyncio.create_task(_request(middleware, "q", "/v1/threads/u"))
    await _settle()
    assert app.entered == ["h", "p"]  # one place, the held poll's, given up once: not two
    app.gate("p").set()
    await first
    await _settle()
    assert app.entered == ["h", "p", "q"]
    app.gate("h").set()
    app.gate("q").set()
    assert (await held)[0]["status"] == 200
    await second
    # Every place came back: the next request goes straight in.
    app.gate("r").set()
    await _request(middleware, "r", "/v1/threads/v")


async def test_a_failed_request_gives_its_place_up() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    middleware = AdmissionMiddleware(failing, limit=1)
    for _ in range(3):  # each would wait forever if the first had kept its place
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(_request(middleware, "x", "/v1/threads/t"), 1)


async def test_uploads_and_health_probes_never_wait() -> None:
    app = App()
    middleware = AdmissionMiddleware(app, limit=1)
    busy = asyncio.create_task(_request(middleware, "busy", "/v1/threads/t"))
    await _settle()
    others = [
        asyncio.create_task(_request(middleware, "upload", "/v1/files", "POST")),
        asyncio.create_task(_request(middleware, "health", "/readyz")),
        asyncio.create_task(_request(middleware, "listing", "/v1/files")),
    ]
    await _settle()
    assert app.entered == ["busy", "upload", "health"]  # listing files is counted: it waits
    for name in ("busy", "upload", "health", "listing"):
        app.gate(name).set()
        await _settle()
    await busy
    for task in others:
        await task
    assert app.entered[-1] == "listing"


async def test_no_limit_admits_everything() -> None:
    app = App()
    middleware = AdmissionMiddleware(app, limit=0)
    tasks = [
        asyncio.create_task(_request(middleware, str(i), f"/v1/threads/{i}")) for i in range(100)
    ]
    await _settle()
    assert len(app.entered) == 100
    for i in range(100):
        app.gate(str(i)).set()
    await asyncio.gather(*tasks)

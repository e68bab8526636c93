"""The workers' health server on its own (assistants/health.py): what it answers before the
worker has connected to anything, and that a bad client gets no answer rather than an error."""

from __future__ import annotations

import asyncio

import httpx

from assistants.devserver import free_port
from assistants.health import Readiness, health_server


async def test_a_starting_worker_is_alive_but_not_ready() -> None:
    port = free_port()
    async with (
        health_server("127.0.0.1", port, Readiness(worker=True)),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        alive = await client.get("/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
        ready = await client.get("/readyz?verbose=1")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/json"
        assert ready.json() == {
            "status": "not_ready",
            "checks": {
                "database": "starting",
                "migrations": "unknown",
                "temporal": "starting",
                "worker": "starting",
            },
        }


async def test_garbage_gets_no_answer_and_the_server_keeps_serving() -> None:
    port = free_port()
    async with health_server("127.0.0.1", port, Readiness(worker=True)):
        for garbage in (b"\r\n\r\n", b"NONSENSE\r\n\r\n", b"GET /" + b"a" * 70_000 + b"\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200

"""Liveness and readiness, for orchestrators (Kubernetes probes, compose health checks, load
balancers): the checks behind `/readyz`, shared by the API and the worker processes, and the tiny
HTTP server the workers answer them on.

`/healthz` means "this process is alive" and does no I/O (a liveness probe that touched the
database would restart every pod when the database blinks). `/readyz` means "send me work": the
store answers, its schema is the one this code needs, Temporal answers and, in a worker, its
Temporal workers are polling and not shutting down. The answer is a JSON object naming every
check; a failed check says why in a few words (an exception's class, never its message: those
can carry URLs with passwords).

The I/O checks run concurrently, each bounded by a timeout, and their result is reused for at
most `cache_s` so a storm of probes costs one query; the worker check reads flags only, so a
SIGTERM turns `/readyz` 503 at once, before the graceful shutdown begins to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from assistants.store import Store
from assistants.store.migrations import LATEST, current_version

log = structlog.get_logger(__name__)

OK = "ok"
CHECK_TIMEOUT_S = 2.0
CACHE_S = 1.0
Report = tuple[bool, dict[str, Any]]


def _failure(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g}s"
    return f"unreachable ({type(error).__name__})"


class Readiness:
    """The readiness checks of one process. The API builds it with its store and client; a
    worker process builds it empty (`worker=True`) before it connects, attaches the store and
    client once it has them, and `watch`es its Temporal workers once they run."""

    def __init__(
        self,
        store: Store | None = None,
        client: Client | None = None,
        *,
        worker: bool = False,
        timeout_s: float = CHECK_TIMEOUT_S,
        cache_s: float = CACHE_S,
    ) -> None:
        self._store = store
        self._client = client
        self._is_worker = worker
        self._workers: list[Worker] = []
        self._stopping = False
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, str]] | None = None
        self._pending: asyncio.Task[dict[str, str]] | None = None

    def attach(self, store: Store, client: Client) -> None:
        self._store, self._client = store, client

    def watch(self, *workers: Worker) -> None:
        self._workers.extend(workers)

    def stopping(self) -> None:
        """Graceful shutdown began: not ready from now on, whatever else holds."""
        self._stopping = True

    async def report(self) -> Report:
        """(ready, body): the body is `{"status": "ready" | "not_ready", "checks": {…}}`."""
        checks = dict(await self._io_checks())
        if self._is_worker:
            checks["worker"] = self._worker_check()
        ready = all(value == OK for value in checks.values())
        return ready, {"status": "ready" if ready else "not_ready", "checks": checks}

    def _worker_check(self) -> str:
        if self._stopping:
            return "shutting down"
        if not self._workers or not all(w.is_running for w in self._workers):
            # Before start, or (briefly) between `async with worker` and its pollers starting.
            return "stopped" if any(w.is_shutdown for w in self._workers) else "starting"
        return OK

    async def _io_checks(self) -> dict[str, str]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._cache_s:
            return self._cached[1]
        if self._pending is None:
            # Concurrent probes share one round of checks; shielded, so a probe that goes away
            # (its connection closed, its handler cancelled) does not cancel the others' answer.
            self._pending = asyncio.create_task(self._run_io_checks())
            self._pending.add_done_callback(self._store_result)
        return await asyncio.shield(self._pending)

    def _store_result(self, task: asyncio.Task[dict[str, str]]) -> None:
        self._pending = None
        if not task.cancelled() and task.exception() is None:
            self._cached = (time.monotonic(), task.result())

    async def _run_io_checks(self) -> dict[str, str]:
        (database, migrations), temporal = await asyncio.gather(
            self._database_checks(), self._temporal_check()
        )
        return {"database": database, "migrations": migrations, "temporal": temporal}

    async def _database_checks(self) -> tuple[str, str]:
        if self._store is None:
            return "starting", "unknown"
        try:
            async with asyncio.timeout(self._timeout_s):
                version = await self._store.db.read(current_version)
        except Exception as error:  # any failure to answer is "not ready", never a 500
            return _failure(error, self._timeout_s), "unknown"
        if version is None:
            return OK, f"not applied (code needs schema {LATEST})"
        if version < LATEST:
            return OK, f"behind (database schema {version}, code needs {LATEST})"
        # Newer is fine: migrations only add, and a rolling deploy runs old code on the new schema
        # for a while (a pod that went unready then would take capacity away mid-deploy).
        return OK, OK

    async def _temporal_check(self) -> str:
        if self._client is None:
            return "starting"
        try:
            # The gRPC health service of the frontend: one cheap RPC, no retries (a probe
            # wants the current answer), bounded by its own deadline.
            serving = await self._client.service_client.check_health(
                timeout=timedelta(seconds=self._timeout_s)
            )
        except Exception as error:  # RPCError (unavailable, deadline exceeded, …)
            return _failure(error, self._timeout_s)
        return OK if serving else "not serving"


# --- the workers' health server ----------------------------------------------------------------

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_READ_TIMEOUT_S = 5.0


async def _respond(readiness: Readiness, method: str, path: str) -> tuple[int, dict[str, Any]]:
    if path not in ("/healthz", "/readyz"):
        return 404, {"error": f"no such path: {path[:100]}"}
    if method not in ("GET", "HEAD"):
        return 405, {"error": f"method {method[:16]} not allowed"}
    if path == "/healthz":
        return 200, {"status": "ok"}
    ready, body = await readiness.report()
    return (200 if ready else 503), body


async def _handle(
    readiness: Readiness, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One HTTP/1.x request, then close (probes open a connection per probe anyway)."""
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S):
            request_line = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()).strip():  # the headers: not needed
                pass
        if len(request_line) != 3:
            return
        method, target = request_line[0], request_line[1]
        status, body = await _respond(readiness, method, target.split("?", 1)[0])
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(head if method == "HEAD" else head + payload)
        await writer.drain()
    except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
        pass  # a slow, gone or garbled client: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def health_server(host: str, port: int, readiness: Readiness) -> AsyncIterator[None]:
    """Serve `/healthz` and `/readyz` on host:port while the block runs (port 0: not at all).

    Plain asyncio rather than uvicorn: uvicorn installs its own SIGTERM handler, which would take
    the signal from the worker's graceful shutdown. A port already taken fails the start-up."""
    if not port:
        yield
        return
    server = await asyncio.start_server(functools.partial(_handle, readiness), host, port)
    log.info("health server listening", host=host, port=port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()

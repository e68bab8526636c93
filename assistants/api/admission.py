"""Admission: at most `api_max_concurrent_requests` API requests are worked on at once; the rest
wait their turn (in arrival order) before any of their work starts. Off by default (0).

Why it exists: an API process that also runs the worker (`dev`, `api` with `api_worker`) shares
one event loop between HTTP and runs, and the Temporal SDK takes its worker's next workflow
activation or activity once per loop iteration. With hundreds of requests in progress, each
iteration runs all their ready callbacks, so the runs' workflow tasks wait seconds for their
turn, and the clients polling those runs keep adding requests. Bounding the requests in progress
trades the clients' request latency for the runs' progress. Measured on two cores under the
200-client mix (`bench/mixed_load.py`, 100 ms polls): unbounded, 8.2 / 8.6 runs/s, plain
requests p50 113 ms, `dev` 67-71 CPU-ms per run (a run took 17 s from create to `completed`);
bounded at 32, 23.3 runs/s, 31.5 CPU-ms per run (5.7 s a run) but plain requests p50 1.1 s;
at 64 and 128 nothing changed. So it is a knob for operators who want runs finished rather
than polls answered, not a default.

A request holds its place until its response starts: a stream (`stream=True`, `/events`) lets
the next request in as soon as its headers are out, since it then spends its life waiting for
events. File uploads are not counted (their bodies arrive at the client's pace), nor are the
health probes. A request that is about to wait rather than work (a poll held until its run
settles) gives its place up the same way (`step_aside`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Where a counted request's scope keeps its way to give its place up.
_RELEASE = "assistants.admission.release"


class AdmissionMiddleware:
    """Pure ASGI, so streamed responses pass straight through."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._slots = asyncio.Semaphore(limit) if limit > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slots = self._slots
        if slots is None or scope["type"] != "http" or not _counted(scope):
            await self._app(scope, receive, send)
            return
        await slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        scope[_RELEASE] = release
        try:
            await self._app(scope, receive, send_releasing)
        finally:
            release()


def step_aside(scope: Scope) -> None:
    """The request is about to wait (for a run to change, not for work): let the next one in."""
    release = scope.get(_RELEASE)
    if release is not None:
        release()


def _counted(scope: Scope) -> bool:
    path: str = scope["path"]
    if not path.startswith("/v1/"):
        return False  # /healthz, /readyz: a probe must not queue behind the load
    return not (scope["method"] == "POST" and path.rstrip("/") == "/v1/files")

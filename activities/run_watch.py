"""One watch per worker over the runs its model rounds serve: is each still `in_progress`?

A model round is a local activity (workflows/run.py): a cancel signal reaches its workflow only at
the next workflow task, which may be seconds away, so the round itself must notice that its run
was cancelled (or expired, or deleted) and stop calling the model. Each round reading its own
run's status once a second cost one store read per second per round in flight, and under a
saturated load hundreds of rounds are in flight. Here every round of the worker waits on one
shared loop instead, which reads all their statuses in one query per interval, and only while
at least one round is waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection

import structlog

log = structlog.get_logger(__name__)

WATCH_INTERVAL_S = 1.0

# The store's answer for a batch of runs: id → status; a run that no longer exists is absent.
Statuses = Callable[[Collection[str]], Awaitable[dict[str, str]]]


class RunWatch:
    """`ended(run_id)` returns once the run is no longer `in_progress` (or no longer exists)."""

    def __init__(self, statuses: Statuses, interval_s: float = WATCH_INTERVAL_S) -> None:
        self._statuses = statuses
        self._interval_s = interval_s
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watched(self) -> int:
        """How many runs are watched now."""
        return len(self._waiting)

    async def ended(self, run_id: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(run_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="run-watch")
        try:
            await future
        finally:
            waiting = self._waiting.get(run_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiting.pop(run_id, None)

    async def _watch(self) -> None:
        while self._waiting:
            await asyncio.sleep(self._interval_s)
            ids = list(self._waiting)
            if not ids:
                break
            try:
                statuses = await self._statuses(ids)
            except Exception as error:  # the store is down: the rounds go on, try again
                log.warning("run watch: status read failed", error=type(error).__name__)
                continue
            for run_id in ids:
                if statuses.get(run_id) == "in_progress":
                    continue
                for future in self._waiting.get(run_id, []):
                    if not future.done():
                        future.set_result(None)

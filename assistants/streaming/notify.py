"""Waking the streams that follow a run when its event log grows.

Three sources feed one `RunNotifier`, so a stream never polls per se:

- in-process commits (`Database.on_commit`): instant when API and worker share a process (`dev`);
- PostgreSQL `LISTEN`: every append issues `pg_notify`, delivered at commit to each API process;
- SQLite across processes: one poller per API process reads the log's newest rows every 20 ms, and
  only while somebody is streaming. Its cost does not grow with the number of streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Iterator

import structlog
from sqlalchemy import make_url

from assistants.store.db import Database
from assistants.store.events import NOTIFY_CHANNEL, latest_rowid, runs_changed_since

log = structlog.get_logger(__name__)


class RunNotifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            for waiter in self._waiters.get(run_id, ()):
                waiter.set()

    def notify_all(self) -> None:
        """Wake every stream (a change feed reconnected: what it missed, they re-read)."""
        self.notify(list(self._waiters))

    @property
    def has_subscribers(self) -> bool:
        return bool(self._waiters)

    @contextlib.contextmanager
    def subscribe(self, run_id: str) -> Iterator[asyncio.Event]:
        waiter = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[run_id]


async def poll_sqlite(db: Database, notifier: RunNotifier, interval_s: float = 0.02) -> None:
    """Cross-process change feed for SQLite (a worker in another process appends events)."""
    mark = await db.read(latest_rowid)
    while True:
        await asyncio.sleep(interval_s)
        if not notifier.has_subscribers:
            continue
        try:
            mark, changed = await db.read(functools.partial(runs_changed_since, rowid=mark))
        except Exception:  # a busy or briefly unavailable database: try again next tick
            log.warning("event poll failed", exc_info=True)
            continue
        notifier.notify(changed)


async def listen_postgres(url: str, notifier: RunNotifier) -> None:
    """Cross-process change feed for PostgreSQL, reconnecting if the connection drops."""
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            log.warning("LISTEN connection failed; retrying", exc_info=True)
            await asyncio.sleep(1)
            continue
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
        await conn.add_listener(
            NOTIFY_CHANNEL, lambda _conn, _pid, _channel, payload: notifier.notify((payload,))
        )
        # Commits while no LISTEN connection was up notified nobody: every stream re-reads.
        notifier.notify_all()
        try:
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
        log.warning("LISTEN connection lost; reconnecting")


async def watch(db: Database, notifier: RunNotifier) -> None:
    """Run the cross-process change feed that fits the database."""
    db.on_commit = notifier.notify
    if db.is_sqlite:
        await poll_sqlite(db, notifier)
    else:
        await listen_postgres(db.url, notifier)

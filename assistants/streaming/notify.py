"""Waking the streams that follow a run when its event log grows.

Three sources feed one `RunNotifier`, so a stream never polls per se:

- in-process commits (`Database.on_commit`): instant when API and worker share a process (`dev`,
  an `api` with its own worker). These carry the committed events themselves, so a stream sends
  them without reading them back from the store;
- PostgreSQL `LISTEN`: every append issues `pg_notify`, delivered at commit to each API process;
- SQLite across processes: one poller per API process reads the log's newest rows every 20 ms, and
  only while somebody is streaming. Its cost does not grow with the number of streams, and it
  wakes only streams that have not yet sent what it found.

Each source also says when a run settles (its log records one of `TERMINAL_EVENTS`): held polls
(`held_poll.py`) wait for that alone, so a run's deltas never wake them. PostgreSQL says it on
a channel of its own (`SETTLED_CHANNEL`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence

import structlog
from sqlalchemy import make_url

from assistants.store.db import Database
from assistants.store.events import (
    NOTIFY_CHANNEL,
    SETTLED_CHANNEL,
    TERMINAL_EVENTS,
    RunEvent,
    latest_rowid,
    runs_changed_since,
)

log = structlog.get_logger(__name__)


# Committed events held for one stream that is not reading (a stalled client): past this, they
# are dropped and the stream reads from the store again, which has them all.
MAX_HELD = 1000


class Subscription:
    """One stream's interest in a run. `wake` is set when the run's log grows past `seen` (what
    the stream has sent); events committed in this process wait in `_held` until it takes them
    (unless it said it needs no events). `settle` is set when the log records the run settling
    (`TERMINAL_EVENTS`), or may have (a change feed reconnected): what a held poll waits for."""

    def __init__(self, seen: int, *, keeps_events: bool = True) -> None:
        self.wake = asyncio.Event()
        self.settle = asyncio.Event()
        self.seen = seen
        self._keeps_events = keeps_events
        self._held: list[RunEvent] = []

    def hold(self, events: Sequence[RunEvent]) -> None:
        if not self._keeps_events:
            return
        fresh = [e for e in events if e.seq > self.seen]
        if not fresh:
            return  # already sent (read back from the store before this commit was announced)
        self._held.extend(fresh)
        if len(self._held) > MAX_HELD:
            self._held.clear()
        self.wake.set()

    def take(self) -> list[RunEvent] | None:
        """The held events right after `seen`, in order; None when they do not follow on from
        it (another process wrote in between, or only a wake came): read the store instead."""
        events = [e for e in self._held if e.seq > self.seen]
        self._held.clear()
        if not events or events[0].seq != self.seen + 1:
            return None
        for before, after in itertools.pairwise(events):
            if after.seq != before.seq + 1:
                return None
        return events


class RunNotifier:
    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}

    def committed(self, appended: Mapping[str, Sequence[RunEvent]]) -> None:
        """Events this process committed (`Database.on_commit`)."""
        for run_id, events in appended.items():
            subscriptions = self._subscriptions.get(run_id)
            if not subscriptions:
                continue
            settles = any(e.event in TERMINAL_EVENTS for e in events)
            for subscription in subscriptions:
                subscription.hold(events)
                if settles:
                    subscription.settle.set()

    def notify(self, run_ids: Iterable[str], newest: Mapping[str, int] | None = None) -> None:
        """A change feed saw the logs of `run_ids` grow (to seq `newest[run_id]`, if known)."""
        for run_id in run_ids:
            upto = newest.get(run_id) if newest is not None else None
            for subscription in self._subscriptions.get(run_id, ()):
                if upto is None or upto > subscription.seen:
                    subscription.wake.set()

    def settled(self, run_ids: Iterable[str]) -> None:
        """A change feed saw the logs of `run_ids` record their runs settling."""
        for run_id in run_ids:
            for subscription in self._subscriptions.get(run_id, ()):
                subscription.settle.set()

    def notify_all(self) -> None:
        """Wake every subscriber (a change feed reconnected: what it missed, they re-read)."""
        runs = list(self._subscriptions)
        self.notify(runs)
        self.settled(runs)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscriptions)

    @contextlib.contextmanager
    def subscribe(
        self, run_id: str, after_seq: int = 0, *, keeps_events: bool = True
    ) -> Iterator[Subscription]:
        subscription = Subscription(after_seq, keeps_events=keeps_events)
        self._subscriptions.setdefault(run_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscriptions = self._subscriptions.get(run_id)
            if subscriptions is not None:
                subscriptions.discard(subscription)
                if not subscriptions:
                    del self._subscriptions[run_id]


async def poll_sqlite(
    db: Database, notifier: RunNotifier, interval_s: float = 0.02, idle_mark_s: float = 1.0
) -> None:
    """Cross-process change feed for SQLite (a worker in another process appends events)."""
    loop = asyncio.get_running_loop()
    mark = await db.lookup(latest_rowid)
    marked = loop.time()
    while True:
        await asyncio.sleep(interval_s)
        if not notifier.has_subscribers:
            # While nobody listens, the mark follows the log now and then, so the first read
            # after a quiet spell (on the event loop's thread) has at most a second of events
            # to go through. Kept only if nobody subscribed meanwhile: what a new subscriber
            # has not read yet must still be reported.
            if loop.time() - marked >= idle_mark_s:
                latest = await db.lookup(latest_rowid)
                marked = loop.time()
                if not notifier.has_subscribers:
                    mark = latest
            continue
        try:
            changes = await db.lookup(functools.partial(runs_changed_since, rowid=mark))
        except Exception:  # a busy or briefly unavailable database: try again next tick
            log.warning("event poll failed", exc_info=True)
            continue
        mark = changes.mark
        notifier.notify(changes.newest, changes.newest)
        notifier.settled(changes.settled)


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
        await conn.add_listener(
            SETTLED_CHANNEL, lambda _conn, _pid, _channel, payload: notifier.settled((payload,))
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
    db.on_commit = notifier.committed
    if db.is_sqlite:
        await poll_sqlite(db, notifier)
    else:
        await listen_postgres(db.url, notifier)

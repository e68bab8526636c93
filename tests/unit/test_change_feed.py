"""SQLite's cross-process change feed (assistants/streaming/notify.py, `poll_sqlite`): another
process's appends wake the run's subscribers, a settling event also sets `settle`, and what was
appended while nobody listened is never read."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from assistants.store import Store
from assistants.streaming.notify import RunNotifier, poll_sqlite


class RecordingNotifier(RunNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.reported: list[str] = []

    def notify(self, run_ids: Iterable[str], newest: Mapping[str, int] | None = None) -> None:
        ids = list(run_ids)
        self.reported.extend(ids)
        super().notify(ids, newest)


def _append(conn: sqlite3.Connection, run_id: str, seq: int, event: str) -> None:
    """An append by another process (the worker's)."""
    conn.execute(
        "INSERT INTO run_events (run_id, seq, key, event, data, created_at, created_ms) "
        "VALUES (?, ?, ?, ?, '{}', ?, ?)",
        (run_id, seq, f"k{seq}", event, int(time.time()), int(time.time() * 1000)),
    )


async def test_the_feed_wakes_and_settles_subscribers_and_skips_the_quiet_spell(
    tmp_path: Path,
) -> None:
    path = tmp_path / "feed.db"
    store = Store.from_url(f"sqlite:///{path}")
    await store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    notifier = RecordingNotifier()
    feed = asyncio.create_task(poll_sqlite(store.db, notifier, interval_s=0.01, idle_mark_s=0.05))
    try:
        await asyncio.sleep(0.05)
        other.execute("BEGIN")
        for seq in range(1, 501):  # while nobody listens
            _append(other, "run_quiet", seq, "thread.message.delta")
        other.execute("COMMIT")
        await asyncio.sleep(0.3)

        with notifier.subscribe("run_1", keeps_events=False) as subscription:
            _append(other, "run_1", 1, "thread.message.delta")
            await asyncio.wait_for(subscription.wake.wait(), 5)
            assert not subscription.settle.is_set()
            _append(other, "run_1", 2, "thread.run.completed")
            await asyncio.wait_for(subscription.settle.wait(), 5)

        assert "run_1" in notifier.reported
        assert "run_quiet" not in notifier.reported  # the mark followed the log meanwhile
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        other.close()
        await store.close()

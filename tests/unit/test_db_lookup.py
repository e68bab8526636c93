"""`Database.lookup`: point reads on SQLite run on the event loop's thread, and a locked
database sends them to a reader thread instead of stalling the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

from assistants.store.db import Database


async def _database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'lookup.db'}")
    await db.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (id TEXT PRIMARY KEY)"))
    await db.write(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES ('a')"))
    return db


def _row_and_thread(conn: Connection) -> tuple[str, int]:
    return conn.execute(text("SELECT id FROM t")).scalar_one(), threading.get_ident()


async def test_a_lookup_runs_on_the_loops_thread_and_a_read_on_a_reader(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    try:
        assert await db.lookup(_row_and_thread) == ("a", threading.get_ident())
        row, reader = await db.read(_row_and_thread)
        assert row == "a" and reader != threading.get_ident()
        # The loop thread's connection sees what the writer thread commits next.
        await db.write(lambda conn: conn.exec_driver_sql("UPDATE t SET id = 'b'"))
        assert (await db.lookup(_row_and_thread))[0] == "b"
    finally:
        await db.dispose()


async def test_a_lookup_connects_off_the_loop_when_the_database_is_locked(
    tmp_path: Path,
) -> None:
    """Another process holds the database exclusively when this one first reads (in WAL mode,
    only a holder that came first can): connecting waits for the lock on a reader thread while
    the loop keeps running."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES ('a')")
    db = Database(f"sqlite:///{path}")
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            holder.execute("COMMIT")
            holder.close()

        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        (row, thread), _ = await asyncio.gather(db.lookup(_row_and_thread), release_later())
        waited = time.monotonic() - started
        tick.cancel()
        assert row == "a" and thread == threading.get_ident()
        assert waited >= 0.3
        assert ticks >= 10  # the loop ran while the connection waited
    finally:
        holder.close()
        await db.dispose()

"""The database handle: transactions as plain functions, run the fastest way each backend allows.

Every store operation is one synchronous function of a SQLAlchemy `Connection`, executed in one
transaction by `Database.write` or `Database.read`:

- **PostgreSQL**: through the async engine (asyncpg) with `AsyncConnection.run_sync`.
- **SQLite**: the whole function runs on a worker thread with the stdlib driver. An async SQLite
  driver hops threads for every cursor call (about 2 ms a statement here, measured), while a
  transaction in one hop costs microseconds a statement; that is most of a run's latency.

SQLite also needs care to serve an API process and a worker process at once: WAL journaling so
readers never block, a busy timeout, and `BEGIN IMMEDIATE` for writes so two writers queue on the
lock instead of failing when a read transaction upgrades to a write. Within one process, writes go
through a single thread, so they never contend on SQLite's busy handler (which sleeps up to 100 ms).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
Transaction = Callable[[Connection], T]
# Run id → the events a committed write appended to its log, in order (`store.events.RunEvent`).
Appended = dict[str, list[Any]]
CommitHook = Callable[[Appended], None]
TOUCHED_RUNS = "assistants_touched_runs"


def dump_json(value: Any) -> str:
    """Every JSON column's serializer: refuses (and so rolls back the write) what no response
    could carry. Python's default would store a lone surrogate as an ASCII `\\ud800` escape that
    reads back fine and then fails every response containing it; NaN is not JSON at all.
    Requests are checked before this (`assistants.storable`): this is the last line."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return text


def touch_run(conn: Connection, run_id: str, appended: list[Any]) -> None:
    """Note, inside a transaction, the events appended to `run_id`'s log; announced after
    commit (a stream in this process then sends them without reading them back)."""
    conn.info.setdefault(TOUCHED_RUNS, {}).setdefault(run_id, []).extend(appended)


def _take_touched(conn: Connection) -> Appended:
    touched: Appended = conn.info.pop(TOUCHED_RUNS, {})
    return touched


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # Called (on the event loop) with the runs whose event logs a committed write extended,
        # and the events it appended.
        self.on_commit: CommitHook | None = None
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._engine: AsyncEngine | None = None
        self._sync: Engine | None = None
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                # First use with a fresh data dir (`keys create`, `migrate`, `api`, `worker`).
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self._sync = create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                echo=echo,
                json_serializer=dump_json,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=8,
                max_overflow=8,
                # No ROLLBACK on every check-in: reads are autocommit and writes end with their
                # own COMMIT or ROLLBACK (`_in_thread`), so a returned connection is never in a
                # transaction, and the reset was a statement per store call.
                pool_reset_on_return=None,
            )
            _configure_sqlite(self._sync)
            self._connections = _ThreadConnections(self._sync)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
            self._readers = ThreadPoolExecutor(4, thread_name_prefix="sqlite-read")
        else:
            # Any PostgreSQL URL (postgresql://, postgres+psycopg://, …) runs on asyncpg.
            self._engine = create_async_engine(
                parsed.set(drivername="postgresql+asyncpg"),
                echo=echo,
                json_serializer=dump_json,
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
            )

    async def write(self, fn: Transaction[T]) -> T:
        """Run `fn` in a write transaction (IMMEDIATE on SQLite); commit unless it raises."""
        if self._sync is not None:
            result, touched = await _in_thread(self._writer, self._connections, fn, immediate=True)
        else:
            assert self._engine is not None

            def tx(conn: Connection) -> tuple[T, Appended]:
                _take_touched(conn)  # left on this pooled connection by a write rolled back
                return fn(conn), _take_touched(conn)

            async with self._engine.begin() as conn:
                result, touched = await conn.run_sync(tx)
        if touched and self.on_commit is not None:
            self.on_commit(touched)
        return result

    async def read(self, fn: Transaction[T]) -> T:
        if self._sync is not None:
            result, _ = await _in_thread(self._readers, self._connections, fn, immediate=False)
            return result
        assert self._engine is not None
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def lookup(self, fn: Transaction[T]) -> T:
        """A read of a few rows through an index (a run, a page of messages, an assistant).

        On SQLite it runs right here, on the event loop's thread, with that thread's own
        connection. Such a read takes tens of microseconds; handing it to a reader thread and
        back cost more: a thread wake-up, then a loop iteration before the awaiting request
        resumes. Under the 200-client mix that hand-off was most of a poll's latency (p50
        76 to 88 ms against 36 to 51 ms inline, `bench.mixed_load`). Once connected, a read in WAL
        mode never waits for a lock: writers do not block readers, and no other connection can
        take the database exclusively while this one has it open. Connecting can wait (another
        process holding the database exclusively, or recovering it after a crash), so the loop
        thread's connection is opened on a reader thread. Scans and searches use `read`.
        """
        if self._sync is None:
            return await self.read(fn)
        conn = self._connections.inline()
        if conn is None:
            conn = await self._connections.open_inline(self._readers)
        return fn(conn)

    async def dispose(self) -> None:
        if self._sync is not None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            self._connections.close()
            self._sync.dispose()
        if self._engine is not None:
            await self._engine.dispose()


class _ThreadConnections:
    """Each pool thread's own SQLite connection, kept open between store calls: a pool checkout
    and check-in per call cost more CPU than most of the calls' statements (the threads are few
    and live as long as the `Database`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._open: dict[int, Connection] = {}
        self._inline: dict[int, Connection] = {}

    def get(self) -> Connection:
        ident = threading.get_ident()
        conn = self._open.get(ident)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._open[ident] = self._engine.connect()
        return conn

    def inline(self) -> Connection | None:
        """This event loop thread's connection, if it has one that works."""
        conn = self._inline.get(threading.get_ident())
        if conn is None or conn.closed:
            return None
        if conn.invalidated:  # its DBAPI connection is gone: give the pool slot back
            conn.close()
            return None
        return conn

    async def open_inline(self, pool: ThreadPoolExecutor) -> Connection:
        """Open this event loop thread's connection on `pool`'s thread (connecting may wait
        for a lock). Kept apart from the pool threads' connections, keyed by the loop thread."""
        ident = threading.get_ident()
        conn = await asyncio.get_running_loop().run_in_executor(pool, self._engine.connect)
        held = self.inline()
        if held is not None:  # another lookup on this loop connected meanwhile
            conn.close()
            return held
        self._inline[ident] = conn
        return conn

    def close(self) -> None:
        """After the pool threads have stopped."""
        for conn in [*self._open.values(), *self._inline.values()]:
            conn.close()
        self._open.clear()
        self._inline.clear()


async def _in_thread(
    pool: ThreadPoolExecutor,
    connections: _ThreadConnections,
    fn: Transaction[T],
    *,
    immediate: bool,
) -> tuple[T, Appended]:
    def run() -> tuple[T, Appended]:
        conn = connections.get()
        if not immediate:
            return fn(conn), {}  # autocommit reads: each statement sees a WAL snapshot
        _take_touched(conn)  # left by a write whose COMMIT failed
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            _take_touched(conn)
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
        return result, _take_touched(conn)

    return await asyncio.get_running_loop().run_in_executor(pool, run)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        pass  # no implicit BEGIN from SQLAlchemy's autobegin; see _in_thread

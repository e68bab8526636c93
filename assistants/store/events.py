"""The durable per-run event log.

Every run state change, step and message event is appended here, in the same transaction as the
state change it describes, as the exact SSE payload (`event` name plus JSON `data`) that the
streaming endpoints serve. Appends are idempotent on `key` (an activity retried after a crash
re-appends nothing) and ordered by a per-run sequence number taken from `runs.event_seq` with an
UPDATE, which serialises concurrent appenders (API and worker) on the run's row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from assistants.store.db import touch_run
from assistants.store.prepared import Prepared
from assistants.store.tables import run_events, runs

NOTIFY_CHANNEL = "assistants_run_events"
TERMINAL_EVENTS = frozenset(
    {
        "thread.run.completed",
        "thread.run.incomplete",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.requires_action",
    }
)


@dataclass(frozen=True)
class RunEvent:
    seq: int
    event: str
    data: str  # JSON text, exactly as served
    created_ms: int | None = None


# The hot path's statements, built once: SQLAlchemy then reuses their compiled form and cache
# key instead of building, hashing and looking up a new construct per event (building them was
# the biggest single CPU cost of a run, measured with py-spy).
# One statement per number of keys, each with plain bind parameters: an `expanding` IN list is
# re-rendered at every execution (SQLAlchemy's "post-compile" step): 36 against 26 µs a call
# with five keys on SQLite. A call appends at most a handful of events, so few are built.
_EXISTING_KEYS: dict[int, Prepared] = {}


def _existing_keys(n: int) -> Prepared:
    statement = _EXISTING_KEYS.get(n)
    if statement is None:
        keys: list[Any] = [bindparam(f"k{i}") for i in range(n)]
        statement = Prepared(
            select(run_events.c.key).where(
                run_events.c.run_id == bindparam("run_id"), run_events.c.key.in_(keys)
            )
        )
        _EXISTING_KEYS[n] = statement
    return statement


_TAKE_SEQS = Prepared(
    update(runs)
    .where(runs.c.id == bindparam("rid"))
    .values(event_seq=runs.c.event_seq + bindparam("n"))
    .returning(runs.c.event_seq)
)
_NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("run_id")))
# A second channel for the appends that settle a run (`TERMINAL_EVENTS`): what held polls wait
# for (assistants/streaming/held_poll.py), so the deltas before do not wake them.
SETTLED_CHANNEL = "assistants_run_settled"
_NOTIFY_SETTLED = select(func.pg_notify(SETTLED_CHANNEL, bindparam("run_id")))
_INSERT = Prepared(run_events.insert())
_READ = Prepared(
    select(run_events.c.seq, run_events.c.event, run_events.c.data, run_events.c.created_ms)
    .where(run_events.c.run_id == bindparam("run_id"), run_events.c.seq > bindparam("after"))
    .order_by(run_events.c.seq)
    .limit(bindparam("limit"))
)


def append(conn: Connection, run_id: str, key: str, event: str, data: dict[str, Any]) -> int | None:
    """Append one event unless `key` is already in the run's log. Returns the new seq or None."""
    seqs = append_many(conn, run_id, [(key, event, data)])
    return seqs[0] if seqs else None


def append_many(
    conn: Connection, run_id: str, items: list[tuple[str, str, dict[str, Any]]]
) -> list[int]:
    """Append `(key, event, data)` items in order, skipping keys already in the run's log, with
    one statement of each kind for all of them. Returns the new seqs."""
    params: dict[str, Any] = {f"k{i}": key for i, (key, _, _) in enumerate(items)}
    params["run_id"] = run_id
    seen = set(_existing_keys(len(items)).scalars(conn, params))
    fresh = []
    for item in items:  # a key twice in `items`: the first wins, as two appends would have it
        if item[0] not in seen:
            seen.add(item[0])
            fresh.append(item)
    if not fresh:
        return []
    last = _TAKE_SEQS.scalar(conn, {"rid": run_id, "n": len(fresh)})
    if last is None:
        raise LookupError(f"run {run_id} does not exist")
    now = time.time()
    created_ms = int(now * 1000)
    if conn.dialect.name == "postgresql":
        # Delivered at commit to every listening API process (see assistants.streaming.notify).
        conn.execute(_NOTIFY, {"run_id": run_id})
        if any(event in TERMINAL_EVENTS for _, event, _ in fresh):
            conn.execute(_NOTIFY_SETTLED, {"run_id": run_id})
    first = int(last) - len(fresh) + 1
    seqs = list(range(first, first + len(fresh)))
    appended = [
        RunEvent(seq, event, json.dumps(data, separators=(",", ":")), created_ms)
        for seq, (_, event, data) in zip(seqs, fresh, strict=True)
    ]
    rows = [
        {
            "run_id": run_id,
            "seq": e.seq,
            "key": key,
            "event": e.event,
            "data": e.data,
            "created_at": int(now),
            "created_ms": created_ms,
        }
        for e, (key, _, _) in zip(appended, fresh, strict=True)
    ]
    _INSERT.run(conn, rows)
    touch_run(conn, run_id, appended)
    return seqs


class Batch:
    """A run's events appended together when the transaction has written what they describe:
    one key check, one sequence bump and one insert for all of them (`append_many`), where an
    `append` each costs those three statements each. For the commits that append several (the
    answer's: the message's end, the step's and the run's)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._items: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, key: str, event: str, data: dict[str, Any]) -> None:
        self._items.append((key, event, data))

    def flush(self, conn: Connection) -> list[int]:
        """Append what was added, in order; returns the new seqs."""
        items, self._items = self._items, []
        return append_many(conn, self.run_id, items) if items else []


def latest_rowid(conn: Connection) -> int:
    """SQLite only: the newest row of the whole log, for the cross-process change poller."""
    return int(conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM run_events").scalar_one())


@dataclass(frozen=True)
class Changes:
    """What the SQLite change poller found after its high-water mark."""

    mark: int  # the new high-water mark (rowid)
    newest: dict[str, int]  # run id → its newest seq
    settled: set[str]  # the runs among them whose new events include a `TERMINAL_EVENTS` one


def runs_changed_since(conn: Connection, rowid: int) -> Changes:
    """SQLite only: the runs whose logs grew after `rowid`."""
    rows = conn.exec_driver_sql(
        "SELECT rowid, run_id, seq, event FROM run_events WHERE rowid > ? ORDER BY rowid",
        (rowid,),
    ).all()
    if not rows:
        return Changes(rowid, {}, set())
    newest: dict[str, int] = {}
    settled: set[str] = set()
    for _, run_id, seq, event in rows:
        newest[str(run_id)] = max(int(seq), newest.get(str(run_id), 0))
        if event in TERMINAL_EVENTS:
            settled.add(str(run_id))
    return Changes(int(rows[-1][0]), newest, settled)


def last_event(conn: Connection, run_id: str) -> RunEvent | None:
    row = conn.execute(
        select(run_events.c.seq, run_events.c.event, run_events.c.data)
        .where(run_events.c.run_id == run_id)
        .order_by(run_events.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else RunEvent(seq=row.seq, event=row.event, data=row.data)


def read(conn: Connection, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[RunEvent]:
    result = _READ.all(conn, {"run_id": run_id, "after": after_seq, "limit": limit})
    return [
        RunEvent(seq=r.seq, event=r.event, data=r.data, created_ms=r.created_ms) for r in result
    ]


def data_with_key_prefix(conn: Connection, run_id: str, prefix: str) -> list[dict[str, Any]]:
    result = conn.execute(
        select(run_events.c.data)
        .where(run_events.c.run_id == run_id, run_events.c.key.startswith(prefix, autoescape=True))
        .order_by(run_events.c.seq)
    )
    return [json.loads(r.data) for r in result]


def by_key(conn: Connection, run_id: str, key: str) -> RunEvent | None:
    """The event appended under `key` (e.g. `run:queued:<step id>`), if it is in the log."""
    row = conn.execute(
        select(run_events.c.seq, run_events.c.event, run_events.c.data).where(
            run_events.c.run_id == run_id, run_events.c.key == key
        )
    ).first()
    return None if row is None else RunEvent(seq=row.seq, event=row.event, data=row.data)


def latest_named(conn: Connection, run_id: str, event: str) -> tuple[dict[str, Any], int] | None:
    """The newest event of this name in the run's log: its data and creation time."""
    row = conn.execute(
        select(run_events.c.data, run_events.c.created_at)
        .where(run_events.c.run_id == run_id, run_events.c.event == event)
        .order_by(run_events.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (json.loads(row.data), int(row.created_at))

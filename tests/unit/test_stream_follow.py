"""Following a run's event log (assistants/streaming): events committed in this process reach
the stream with their notification and are sent without reading them back; anything else (a
commit from another process, a gap) is read from the store, so every event goes out once and
in order. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from assistants.store import Store
from assistants.store.db import Database, Transaction
from assistants.store.events import RunEvent, read
from assistants.store.migrations import LATEST
from assistants.store.objects import text_content
from assistants.store.runs import RunEnd
from assistants.streaming.notify import RunNotifier
from assistants.streaming.sse import follow
from assistants.testing.postgres import PostgresCluster
from tests.unit.test_store import run_fields

T = TypeVar("T")
_counter = iter(range(1_000_000))


class CountingDatabase(Database):
    """The store's database, counting read transactions."""

    reads = 0

    async def read(self, fn: Transaction[T]) -> T:
        self.reads += 1
        return await super().read(fn)


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"follow_{next(_counter)}_{int(time.time())}")


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    store = Store(CountingDatabase(url))
    assert await store.migrate() == [LATEST]
    yield store
    await store.close()


async def _run(store: Store) -> str:
    assistant = await store.assistants.create("p", {"model": "m", "tools": [], "metadata": {}})
    thread = await store.threads.create(
        "p", {}, None, [{"role": "user", "content": text_content("Hi"), "metadata": {}}]
    )
    run = await store.runs.create("p", thread["id"], run_fields(assistant["id"]), [])
    return str(run["id"])


async def _answer(store: Store, run_id: str) -> None:
    """What a model round writes: `in_progress`, the message with its first delta, one more
    delta, the answer that ends the run."""
    await store.runs.start_round(run_id, "step_a", "msg_a")
    await store.runs.begin_message(run_id, "step_a", "msg_a", first_delta="Hel")
    await store.runs.append_message_delta(run_id, "msg_a", "delta:msg_a:3", "lo", first=False)
    await store.runs.complete_message(
        run_id, "step_a", "msg_a", "Hello", {}, truncated=False, end=RunEnd("completed")
    )


async def _follow(store: Store, notifier: RunNotifier, run_id: str) -> list[RunEvent]:
    return [e async for batch in follow(store, notifier, run_id) if batch for e in batch]


async def _logged(store: Store, run_id: str) -> list[RunEvent]:
    return await store.db.read(lambda conn: read(conn, run_id))


async def test_events_committed_in_this_process_are_sent_without_a_read(store: Store) -> None:
    notifier = RunNotifier()
    store.db.on_commit = notifier.committed
    run_id = await _run(store)
    stream = asyncio.create_task(_follow(store, notifier, run_id))
    await asyncio.sleep(0.2)  # the stream has read what was there and waits
    assert isinstance(store.db, CountingDatabase)
    reads_before = store.db.reads

    await _answer(store, run_id)
    sent = await asyncio.wait_for(stream, 5)

    assert store.db.reads == reads_before  # nothing read back
    logged = await _logged(store, run_id)
    assert sent == logged  # every event once, in order, as stored
    assert [e.seq for e in sent] == list(range(1, len(sent) + 1))
    assert sent[-1].event == "thread.run.completed"
    assert "thread.message.delta" in [e.event for e in sent]


async def test_a_commit_from_another_process_is_read_from_the_store(store: Store, url: str) -> None:
    """Another process's commit is not announced here; the next commit announced here does not
    follow on from what the stream sent, so the stream reads the store and misses nothing."""
    notifier = RunNotifier()
    store.db.on_commit = notifier.committed
    run_id = await _run(store)
    stream = asyncio.create_task(_follow(store, notifier, run_id))
    await asyncio.sleep(0.2)

    elsewhere = Store.from_url(url)  # like a worker in another process: no hook here
    try:
        await elsewhere.runs.start_round(run_id, "step_a", "msg_a")
        await elsewhere.runs.begin_message(run_id, "step_a", "msg_a", first_delta="Hel")
    finally:
        await elsewhere.close()
    await store.runs.append_message_delta(run_id, "msg_a", "delta:msg_a:3", "lo", first=False)
    await store.runs.complete_message(
        run_id, "step_a", "msg_a", "Hello", {}, truncated=False, end=RunEnd("completed")
    )
    sent = await asyncio.wait_for(stream, 5)

    assert sent == await _logged(store, run_id)
    assert [e.seq for e in sent] == list(range(1, len(sent) + 1))


async def test_a_change_feed_wakes_only_streams_behind_it() -> None:
    """The SQLite poller reports each run's newest seq: a stream that already sent it is not
    woken (no read), one behind it is."""
    notifier = RunNotifier()
    with (
        notifier.subscribe("run_a", after_seq=7) as current,
        notifier.subscribe("run_a", after_seq=3) as behind,
    ):
        notifier.notify(["run_a"], {"run_a": 7})
        assert not current.wake.is_set() and behind.wake.is_set()
        notifier.notify(["run_a"])  # no seq known (PostgreSQL's LISTEN): wake
        assert current.wake.is_set()


async def test_a_change_feed_seeing_what_a_stream_is_sending_does_not_wake_it(
    store: Store,
) -> None:
    """While the stream's consumer writes a batch to the client's socket, the change feed
    reports the same events: the stream already counts them as sent and reads nothing more."""
    notifier = RunNotifier()
    store.db.on_commit = notifier.committed
    run_id = await _run(store)
    await store.runs.start_round(run_id, "step_a", "msg_a")
    assert isinstance(store.db, CountingDatabase)
    stream = follow(store, notifier, run_id)
    first = await anext(stream)  # the initial read
    assert first is not None
    reads = store.db.reads
    # The consumer is "writing" `first`; the feed announces the log's newest seq meanwhile.
    notifier.notify([run_id], {run_id: first[-1].seq})
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)  # woken by that, it would read the store now
    assert not waiting.done()
    await store.runs.begin_message(run_id, "step_a", "msg_a", first_delta="Hel")
    second = await asyncio.wait_for(waiting, 5)
    assert second is not None and second[0].seq == first[-1].seq + 1
    assert store.db.reads == reads  # the commit's own events, not a read
    waiting = asyncio.ensure_future(anext(stream))
    waiting.cancel()  # the stream ends with its consumer
    with contextlib.suppress(asyncio.CancelledError):
        await waiting

"""Held polls: a run read from the SDK's `poll` helpers answers when the run settles.

`create_and_poll` and `poll` read the run and, until it settles (`completed`, `requires_action`,
`failed`, …), sleep for `openai-poll-after-ms` and read again. Answered at once, each of those
reads costs a request while nothing changes, and the client learns that the run ended up to a
poll interval late. The helpers mark their reads (`X-Stainless-Poll-Helper: true`, in the
Python and Node SDKs), so such a read may wait, up to `poll_hold_ms`, for the event that settles
the run, and answer the moment it is committed: a long poll. The client's loop is unchanged: it
gets a run object, settled or not, and polls again if not. Reads without the header (a plain
`runs.retrieve`) answer at once.

The wait follows the notifications streams follow (`RunNotifier`), which also say when a run
settles: in this process from the committed events, across processes from the change feeds
(SQLite's poller sees the events' names; PostgreSQL notifies a channel of its own). A run's
message deltas wake nothing; a held poll reads the run when it starts, when the run settles
(or a change feed reconnected), and once more when its time is up.

The vector-store pollers (`vector_stores.files.poll` until the file leaves `in_progress`,
`file_batches.poll` until no file of the batch is) send the same header. Their objects have no
change feed: an ingestion commits in a worker, often another process. A held read of them
re-reads the object instead (an indexed read of its row; a batch's also counts its files),
first after `REREAD_INTERVAL_S`, then backing off to `MAX_REREAD_INTERVAL_S`, the SDK's own
cadence: a short ingestion is seen ending within tens of milliseconds, and a long one costs
about the reads the SDK's unheld polls would have, without their requests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from assistants.store.events import TERMINAL_EVENTS
from assistants.streaming.notify import RunNotifier

# The statuses the SDK's poll helpers stop at: those `TERMINAL_EVENTS` announce.
SETTLED = frozenset(event.removeprefix("thread.run.") for event in TERMINAL_EVENTS)
POLL_HELPER = "x-stainless-poll-helper"
# The SDK's read timeout for the request, in seconds: a held read answers well within it.
READ_TIMEOUT = "x-stainless-read-timeout"

Run = dict[str, Any]
T = TypeVar("T")
# How often a held read re-reads an object that has no change feed (vector-store files, batches).
REREAD_INTERVAL_S = 0.02
MAX_REREAD_INTERVAL_S = 0.1


def hold_seconds(headers: Mapping[str, str], hold_ms: int) -> float:
    """How long this read may wait for its run to settle: 0 unless a poll helper sent it, and
    at most half the client's read timeout when it says what that is."""
    if hold_ms <= 0 or headers.get(POLL_HELPER, "").lower() != "true":
        return 0.0
    hold = hold_ms / 1000
    try:
        read_timeout = float(headers.get(READ_TIMEOUT, "inf"))
    except ValueError:
        return hold
    if math.isfinite(read_timeout) and read_timeout > 0:
        hold = min(hold, read_timeout / 2)
    return hold


async def until_settled(
    read: Callable[[], Awaitable[Run]],
    notifier: RunNotifier,
    run_id: str,
    hold_s: float,
    *,
    before_wait: Callable[[], None] = lambda: None,
) -> Run:
    """The run as `read` returns it, once settled or after `hold_s`, whichever comes first.
    `before_wait` is called before waiting (the request gives its place up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_s
    # Subscribed before the first read: a run settling after it sets `settle`.
    with notifier.subscribe(run_id, keeps_events=False) as subscription:
        while True:
            subscription.settle.clear()  # before reading: settling during the read still wakes
            run = await read()
            if run["status"] in SETTLED:
                return run
            remaining = deadline - loop.time()
            if remaining <= 0:
                return run
            before_wait()
            try:
                await asyncio.wait_for(subscription.settle.wait(), remaining)
            except TimeoutError:
                return await read()


async def until_read_settled(
    read: Callable[[], Awaitable[T]],
    settled: Callable[[T], bool],
    hold_s: float,
    *,
    interval_s: float = REREAD_INTERVAL_S,
    before_wait: Callable[[], None] = lambda: None,
) -> T:
    """The object as `read` returns it, once `settled` or after `hold_s`, re-read meanwhile
    after `interval_s`, then less often (for objects without a change feed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_s
    found = await read()
    if not settled(found):
        before_wait()
    while not settled(found):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval_s, remaining))
        interval_s = min(interval_s * 1.5, max(interval_s, MAX_REREAD_INTERVAL_S))
        found = await read()
    return found

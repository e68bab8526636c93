"""Held polls: a run read from the SDK's `poll` helpers answers when the run settles.

`create_and_poll` and `poll` read the run and, until it settles (`completed`, `requires_action`,
`failed`, …), sleep for `openai-poll-after-ms` and read again. Answered at once, each of those
reads costs a request while nothing changes, and the client learns that the run ended up to a
poll interval late. The helpers mark their reads (`X-Stainless-Poll-Helper: true`, in the
Python and Node SDKs), so such a read may wait, up to `poll_hold_ms`, for the event that settles
the run, and answer the moment it is committed: a long poll. The client's loop is unchanged: it
gets a run object, settled or not, and polls again if not. Reads without the header (a plain
`runs.retrieve`) answer at once.

The wait follows the notifications streams follow (`RunNotifier`): in-process commits carry
their events, so a message delta does not cost a read; a change feed's bare wake-up (another
process wrote) re-reads the run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from assistants.store.events import TERMINAL_EVENTS
from assistants.streaming.notify import RunNotifier, Subscription

# The statuses the SDK's poll helpers stop at: those `TERMINAL_EVENTS` announce.
SETTLED = frozenset(event.removeprefix("thread.run.") for event in TERMINAL_EVENTS)
POLL_HELPER = "x-stainless-poll-helper"
# The SDK's read timeout for the request, in seconds: a held read answers well within it.
READ_TIMEOUT = "x-stainless-read-timeout"

Run = dict[str, Any]


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
    `before_wait` is called once, before the first wait (the request gives its place up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold_s
    # Subscribed before the first read: a commit after it wakes the wait below.
    with notifier.subscribe(run_id) as subscription:
        while True:
            subscription.wake.clear()  # before reading: a commit during the read still wakes
            subscription.drain()
            run = await read()
            if run["status"] in SETTLED:
                return run
            before_wait()
            if not await _settling(subscription, deadline):
                return await read()


async def _settling(subscription: Subscription, deadline: float) -> bool:
    """Wait for a commit that may have settled the run: True when one came (its events include
    a settling one, or a change feed woke us without events), False at the deadline."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            await asyncio.wait_for(subscription.wake.wait(), remaining)
        except TimeoutError:
            return False
        subscription.wake.clear()  # before draining: a commit after the drain wakes us again
        events = subscription.drain()
        if not events or any(event.event in TERMINAL_EVENTS for event in events):
            return True
    return False

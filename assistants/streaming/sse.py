"""Server-sent events from the durable event log.

Framing is what the `openai` SDK parses: `id: <seq>` (for `Last-Event-ID`), `event: <name>`,
`data: <one-line JSON>`, a blank line; `: keep-alive` comment lines during silences; and the
`event: done` / `data: [DONE]` terminator once the run reaches a status that ends a stream
(terminal, or `requires_action`: the client answers with a new request).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from assistants.metrics import Metrics
from assistants.store import Store
from assistants.store.events import TERMINAL_EVENTS, RunEvent, last_event, read
from assistants.streaming.notify import RunNotifier

DONE = b"event: done\ndata: [DONE]\n\n"
# A bare comment line, deliberately *not* followed by a blank line: SSE parsers keep the last
# event id across events, and the `openai` SDK dispatches an empty event (then fails to parse its
# empty data as JSON) on a blank line whenever an id has been seen. A lone comment line is
# ignored by every parser and still keeps proxies and clients from timing out.
KEEPALIVE = b": keep-alive\n"


# Events read per store call while following a run.
_BATCH = 500


def frame(event: RunEvent) -> bytes:
    return f"id: {event.seq}\nevent: {event.event}\ndata: {event.data}\n\n".encode()


async def follow(
    store: Store,
    notifier: RunNotifier,
    run_id: str,
    after_seq: int = 0,
    *,
    safety_poll_s: float = 5.0,
    keepalive_s: float = 15.0,
) -> AsyncIterator[list[RunEvent] | None]:
    """Yield the run's events after `after_seq`, in batches of those available at once, until
    one that ends a stream; `None` is a keep-alive tick. Waits on the notifier between reads
    (re-reading at least every `safety_poll_s` in case a notification was lost: the notifier
    is reliable within a process, and the cross-process feeds wake every stream when they
    (re)connect, so an idle stream costs one read per `safety_poll_s`). Events committed in
    this process come with their notification and are sent without a read, when they follow
    on from what was sent."""
    with notifier.subscribe(run_id, after_seq) as subscription:
        wake = subscription.wake
        quiet_since = time.monotonic()
        first_read = True
        while True:
            wake.clear()  # before reading: a commit during the read wakes the next wait
            batch = None if first_read else subscription.take()
            if batch is None:
                batch = await store.db.lookup(
                    functools.partial(read, run_id=run_id, after_seq=after_seq, limit=_BATCH)
                )
            fresh: list[RunEvent] = []
            for event in batch:
                if event.seq > after_seq:
                    fresh.append(event)
                    after_seq = event.seq
                    if event.event in TERMINAL_EVENTS:
                        break
            if fresh:
                # Before the yield, which waits for the client's socket: a change feed that sees
                # these events meanwhile must not wake this stream to read them again.
                subscription.seen = after_seq
                yield fresh
                if fresh[-1].event in TERMINAL_EVENTS:
                    return
            if batch:
                quiet_since = time.monotonic()
                first_read = False
                if len(batch) == _BATCH:
                    continue  # more may be waiting; a shorter batch was all there was
                # Otherwise wait: a commit since `wake.clear()` has already set `wake`.
            if first_read:
                # Resumed after the event that ended the stream: nothing more will come.
                last = await store.db.lookup(functools.partial(last_event, run_id=run_id))
                if last is not None and last.seq <= after_seq and last.event in TERMINAL_EVENTS:
                    return
                first_read = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(safety_poll_s, keepalive_s))
            if time.monotonic() - quiet_since >= keepalive_s:
                yield None
                quiet_since = time.monotonic()


async def sse_stream(
    store: Store,
    notifier: RunNotifier,
    run_id: str,
    after_seq: int = 0,
    *,
    keepalive_s: float = 15.0,
    metrics: Metrics | None = None,
    rewrite: Callable[[RunEvent], Awaitable[RunEvent]] | None = None,
) -> AsyncIterator[bytes]:
    """`rewrite`: what the request asked to see differently (run create's `include[]`)."""
    # Lag is measured for events appended while this stream is open (not for a replayed past).
    opened_ms = time.time() * 1000
    done = False
    async for events in follow(store, notifier, run_id, after_seq, keepalive_s=keepalive_s):
        if events is None:
            yield KEEPALIVE
            continue
        # One write for the events available at once (a commit brings up to five), and the
        # terminator with the event that ends the stream.
        frames = [frame(e if rewrite is None else await rewrite(e)) for e in events]
        done = events[-1].event in TERMINAL_EVENTS
        yield b"".join([*frames, DONE] if done else frames)
        if metrics is not None:
            now_ms = time.time() * 1000
            for event in events:
                if event.created_ms is not None and event.created_ms >= opened_ms:
                    metrics.event_delivered(timedelta(milliseconds=now_ms - event.created_ms))
    if not done:
        yield DONE  # resumed after the event that ended the stream

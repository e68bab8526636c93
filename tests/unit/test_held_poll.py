"""Held polls (assistants/streaming/held_poll.py): which reads may wait, for how long, and what
wakes them. The run notifier is the real one; the store read is a function over a dict."""

from __future__ import annotations

import asyncio
import time

from assistants.store.events import RunEvent
from assistants.streaming.held_poll import hold_seconds, until_read_settled, until_settled
from assistants.streaming.notify import RunNotifier


def test_only_the_sdks_poll_helpers_are_held_and_within_their_read_timeout() -> None:
    helper = {"x-stainless-poll-helper": "true"}
    assert hold_seconds({}, 1000) == 0.0
    assert hold_seconds({"x-stainless-poll-helper": "false"}, 1000) == 0.0
    assert hold_seconds(helper, 0) == 0.0
    assert hold_seconds(helper, 1000) == 1.0
    assert hold_seconds(helper | {"x-stainless-read-timeout": "600"}, 1000) == 1.0
    assert hold_seconds(helper | {"x-stainless-read-timeout": "0.5"}, 1000) == 0.25
    for odd in ("nan", "inf", "-3", "0", "soon"):
        assert hold_seconds(helper | {"x-stainless-read-timeout": odd}, 1000) == 1.0


def _event(seq: int, name: str) -> RunEvent:
    return RunEvent(seq=seq, event=name, data="{}")


class Run:
    """The stored run: its status and how often it was read."""

    def __init__(self) -> None:
        self.status = "in_progress"
        self.reads = 0

    async def read(self) -> dict[str, str]:
        self.reads += 1
        return {"id": "run_1", "status": self.status}


async def test_a_held_poll_answers_when_the_settling_event_is_committed() -> None:
    notifier, run = RunNotifier(), Run()
    waited: list[bool] = []
    started = time.monotonic()
    poll = asyncio.create_task(
        until_settled(run.read, notifier, "run_1", 5.0, before_wait=lambda: waited.append(True))
    )
    await asyncio.sleep(0.05)
    # Message deltas do not wake it, nor does another run settling.
    notifier.committed({"run_1": [_event(5, "thread.message.delta")]})
    notifier.committed({"run_2": [_event(1, "thread.run.completed")]})  # another run
    await asyncio.sleep(0.05)
    assert run.reads == 1 and not poll.done()
    run.status = "completed"
    notifier.committed({"run_1": [_event(6, "thread.message.completed")]})
    notifier.committed({"run_1": [_event(7, "thread.run.completed")]})
    answered = await poll
    assert answered["status"] == "completed" and run.reads == 2
    assert time.monotonic() - started < 1.0
    assert waited == [True]


async def test_a_change_feed_wakes_it_only_when_the_run_settles() -> None:
    notifier, run = RunNotifier(), Run()
    poll = asyncio.create_task(until_settled(run.read, notifier, "run_1", 5.0))
    await asyncio.sleep(0.05)
    notifier.notify(["run_1"], {"run_1": 9})  # another process appended deltas
    await asyncio.sleep(0.05)
    assert run.reads == 1 and not poll.done()
    run.status = "requires_action"
    notifier.settled(["run_1"])  # and then the event that settles it
    assert (await poll)["status"] == "requires_action"
    assert run.reads == 2


async def test_a_change_feed_reconnecting_rereads_the_run() -> None:
    notifier, run = RunNotifier(), Run()
    poll = asyncio.create_task(until_settled(run.read, notifier, "run_1", 5.0))
    await asyncio.sleep(0.05)
    run.status = "cancelled"
    notifier.notify_all()  # what it missed meanwhile, nobody knows
    assert (await poll)["status"] == "cancelled"


async def test_a_held_poll_answers_with_the_run_as_it_is_after_the_hold() -> None:
    notifier, run = RunNotifier(), Run()
    started = time.monotonic()
    answered = await until_settled(run.read, notifier, "run_1", 0.2)
    assert answered["status"] == "in_progress"
    assert 0.2 <= time.monotonic() - started < 1.0
    assert run.reads == 2  # read again at the end, not answered with the first read
    assert not notifier.has_subscribers


async def test_a_settled_run_is_answered_at_once() -> None:
    notifier, run = RunNotifier(), Run()
    run.status = "failed"
    waited: list[bool] = []
    answered = await until_settled(
        run.read, notifier, "run_1", 5.0, before_wait=lambda: waited.append(True)
    )
    assert answered["status"] == "failed" and run.reads == 1 and not waited


async def test_an_object_without_a_change_feed_is_reread_until_it_settles() -> None:
    """A vector-store file: re-read every interval, answered at the first read that finds it
    settled; the request steps aside once, before it starts waiting."""
    run = Run()  # any object with a status will do
    asides: list[None] = []

    async def settle_later() -> None:
        await asyncio.sleep(0.1)
        run.status = "completed"

    settling = asyncio.create_task(settle_later())
    started = time.monotonic()
    found = await until_read_settled(
        run.read,
        lambda r: r["status"] != "in_progress",
        5.0,
        interval_s=0.01,
        before_wait=lambda: asides.append(None),
    )
    await settling
    assert found["status"] == "completed"
    assert 0.09 < time.monotonic() - started < 1.0
    assert 3 <= run.reads <= 30 and len(asides) == 1


async def test_an_object_still_unsettled_is_answered_after_the_hold() -> None:
    run = Run()
    started = time.monotonic()
    found = await until_read_settled(
        run.read, lambda r: r["status"] != "in_progress", 0.2, interval_s=0.05
    )
    assert found["status"] == "in_progress"
    assert 0.19 < time.monotonic() - started < 1.0
    settled = Run()
    settled.status = "failed"
    asides: list[None] = []
    assert (
        await until_read_settled(
            settled.read,
            lambda r: r["status"] != "in_progress",
            5.0,
            before_wait=lambda: asides.append(None),
        )
    )["status"] == "failed"
    assert settled.reads == 1 and not asides  # settled at once: one read, no wait

"""Writing the assistant's message as the model produces it.

`MessageWriter` creates the `message_creation` step and the assistant message lazily, when the
first text arrives (so a call that fails before producing anything leaves no empty message behind),
then appends `thread.message.delta` events in batches — one event per flush interval, not one per
token — and finally stores the full text.

Delta events are keyed by their character offset in the message. When a model call is retried
after a crash, the new attempt re-generates from the start: text up to what earlier attempts already
emitted is not emitted again, only what goes beyond it. `thread.message.completed` always carries
the full stored text, which is authoritative (the SDK's stream handler replaces its snapshot with
it), so what a streaming client ends with equals what the thread holds.
"""

from __future__ import annotations

import time
from typing import Any

from assistants.file_search.citations import Citer, flushable
from assistants.store import Store
from assistants.store.runs import RunEnd, RunEnded
from workflows.shared import Usage


class RunNoLongerActive(Exception):
    """The run left `in_progress` (a cancellation was requested): stop producing output."""


class MessageWriter:
    def __init__(
        self,
        store: Store,
        run_id: str,
        step_id: str,
        message_id: str,
        flush_interval_s: float,
        *,
        retried: bool,
        citer: Citer | None = None,
    ) -> None:
        # file_search: markers become annotations, streamed with their markers (citations.py).
        self._citer = citer
        self._cited = 0  # file citations streamed so far
        self._store = store
        self._run_id = run_id
        self._step_id = step_id
        self._message_id = message_id
        self._interval = flush_interval_s
        self.text = ""
        self._emitted = 0  # characters of `text` covered by delta events
        self._begun = False
        self._retried = retried  # only a retried call can find text streamed before it
        self._last_flush = 0.0

    async def _begin(self) -> None:
        if self._begun:
            return
        if not await self._store.runs.begin_message(self._run_id, self._step_id, self._message_id):
            raise RunNoLongerActive(self._run_id)
        if self._retried:
            previous = await self._previously_emitted()
            self._emitted = len(previous)
            if self._citer is not None:
                self._cited = len(self._citer.annotations(previous))
        self._begun = True

    async def _previously_emitted(self) -> str:
        """Text that earlier attempts of this call already streamed."""
        return await self._store.runs.emitted_message_text(self._run_id, self._message_id)

    async def add(self, text: str) -> None:
        self.text += text
        if not self._begun and not self._retried and self._citer is None:
            # The first text: the step, the message and the first delta in one commit. (A retried
            # call first finds what was streamed before; citations wait for whole markers.)
            if not await self._store.runs.begin_message(
                self._run_id, self._step_id, self._message_id, first_delta=self.text
            ):
                raise RunNoLongerActive(self._run_id)
            self._begun = True
            self._emitted = len(self.text)
            self._last_flush = time.monotonic()
            return
        await self._begin()
        if time.monotonic() - self._last_flush >= self._interval:
            await self.flush()

    async def flush(self, final: bool = False) -> None:
        end = len(self.text)
        if self._citer is not None and not final:
            end = flushable(self.text, self._emitted)  # never end a batch inside a marker
        if not self._begun or end <= self._emitted:
            return
        pending = self.text[self._emitted : end]
        offset = self._emitted
        cited: list[dict[str, Any]] = []
        if self._citer is not None:
            found = self._citer.annotations(self.text, offset, end)
            cited = [{"index": self._cited + i} | a for i, a in enumerate(found)]
        appended = await self._store.runs.append_message_delta(
            self._run_id,
            self._message_id,
            key=f"delta:{self._message_id}:{offset}",
            text=pending,
            first=offset == 0,
            annotations=cited,
        )
        if not appended:
            raise RunNoLongerActive(self._run_id)
        self._emitted = end
        self._cited += len(cited)
        self._last_flush = time.monotonic()

    async def complete(
        self,
        usage: Usage,
        *,
        truncated: bool,
        images: list[str] | None = None,
        annotations: list[dict[str, Any]] | None = None,
        end: RunEnd | None = None,
    ) -> RunEnded | None:
        """`images`: file ids shown as `image_file` blocks after the text; `annotations`: the
        text's `file_path` annotations (both from code_interpreter); `end`: the run ends with
        this message, in the same commit (returned: how it ended it, if it did)."""
        await self._begin()
        await self.flush(final=True)
        citations = self._citer.annotations(self.text) if self._citer is not None else []
        annotations = citations + list(annotations or [])
        return await self._store.runs.complete_message(
            self._run_id,
            self._step_id,
            self._message_id,
            self.text,
            usage.as_object(),
            truncated=truncated,
            images=images or [],
            annotations=annotations,
            streamed_annotations=len(citations),
            end=end,
        )

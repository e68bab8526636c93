"""Streaming the tool calls of a model round into a `tool_calls` run step.

As the model streams a call, clients see what OpenAI sends: `thread.run.step.created` for the step,
then per call one `thread.run.step.delta` with its `index`, id, function name and empty arguments,
then the argument fragments (batched like message text). Call ids are ours, derived from the step
id, so a retried model call keeps them; its fragments are keyed by offset and only what goes beyond
the earlier attempt's is streamed again. The stored step is authoritative either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from activities.messages import RunNoLongerActive
from assistants.backends import ToolCallDelta
from assistants.store import Store
from assistants.store.tool_calls import tool_call_id


@dataclass
class _Call:
    index: int
    id: str
    name: str = ""
    arguments: str = ""
    announced: bool = False  # the head delta (id, name) has been emitted
    emitted: int = 0  # characters of `arguments` covered by delta events


class ToolCallWriter:
    def __init__(
        self,
        store: Store,
        run_id: str,
        step_id: str,
        flush_interval_s: float,
        *,
        retried: bool,
        parallel: bool,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._step_id = step_id
        self._interval = flush_interval_s
        self._retried = retried
        self._parallel = parallel
        self._calls: list[_Call] = []
        self._by_provider_index: dict[int, _Call] = {}
        self._begun = False
        self._last_flush = 0.0
        self._previous: dict[int, tuple[bool, int]] = {}

    @property
    def started(self) -> bool:
        return bool(self._calls)

    async def _begin(self) -> None:
        if self._begun:
            return
        if not await self._store.tool_calls.begin_step(self._run_id, self._step_id):
            raise RunNoLongerActive(self._run_id)
        if self._retried:
            for delta in await self._store.tool_calls.emitted_deltas(self._run_id, self._step_id):
                announced, emitted = self._previous.get(delta["index"], (False, 0))
                if "id" in delta:
                    announced = True
                emitted += len(delta["function"].get("arguments", ""))
                self._previous[delta["index"]] = (announced, emitted)
        self._begun = True

    async def add(self, delta: ToolCallDelta) -> None:
        call = self._by_provider_index.get(delta.index)
        if call is None:
            if self._calls and not self._parallel:
                return  # parallel_tool_calls=false: only the first call counts
            index = len(self._calls)
            call = _Call(index=index, id=tool_call_id(self._step_id, index))
            self._calls.append(call)
            self._by_provider_index[delta.index] = call
            await self._begin()
            announced, emitted = self._previous.get(index, (False, 0))
            call.announced, call.emitted = announced, emitted
        if delta.name:
            call.name += delta.name
        call.arguments += delta.arguments
        if time.monotonic() - self._last_flush >= self._interval:
            await self.flush()

    async def _append(self, key: str, payload: dict[str, Any]) -> None:
        if not await self._store.tool_calls.append_delta(self._run_id, self._step_id, key, payload):
            raise RunNoLongerActive(self._run_id)

    async def flush(self) -> None:
        for call in self._calls:
            if not call.name:
                continue  # the head needs the function name
            if not call.announced:
                await self._append(
                    f"tcdelta:{self._step_id}:{call.index}:head",
                    {
                        "index": call.index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": "", "output": None},
                    },
                )
                call.announced = True
            if len(call.arguments) > call.emitted:
                await self._append(
                    f"tcdelta:{self._step_id}:{call.index}:{call.emitted}",
                    {
                        "index": call.index,
                        "type": "function",
                        "function": {"arguments": call.arguments[call.emitted :]},
                    },
                )
                call.emitted = len(call.arguments)
        self._last_flush = time.monotonic()

    async def complete(self, usage: dict[str, int]) -> list[dict[str, Any]]:
        """Flush what is left and store the calls on the step; returns `[{id, name, arguments}]`."""
        await self.flush()
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self._calls]
        stored = await self._store.tool_calls.store_calls(self._run_id, self._step_id, calls, usage)
        if stored is None:
            raise RunNoLongerActive(self._run_id)
        return stored

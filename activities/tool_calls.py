"""Streaming the tool calls of a model round into a `tool_calls` run step.

As the model streams a call, clients see what OpenAI sends: `thread.run.step.created` for the step,
then per call one `thread.run.step.delta` with its `index`, id, function name and empty arguments,
then the argument fragments (batched like message text). Call ids are ours, derived from the step
id, so a retried model call keeps them; its fragments are keyed by offset and only what goes beyond
the earlier attempt's is streamed again. The stored step is authoritative either way.

A call of code_interpreter's `python` function streams as OpenAI streams a code_interpreter call:
the head `{index, id, type: "code_interpreter", code_interpreter: {input: "", outputs: []}}`, then
the code itself (decoded from the JSON arguments as they arrive) as `input` fragments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from activities.messages import RunNoLongerActive
from assistants.backends import ToolCallDelta
from assistants.code_interpreter.tool import StreamedCode
from assistants.file_search import tool as search_tool
from assistants.store import Store
from assistants.store.tool_calls import tool_call_id


@dataclass
class _Call:
    index: int
    id: str
    name: str = ""
    arguments: str = ""
    announced: bool = False  # the head delta (id, name) has been emitted
    emitted: int = 0  # characters of `arguments` (code: of the decoded code) in delta events
    code: StreamedCode | None = None  # set for a code_interpreter call


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
        code_tool: str | None = None,
        search_ranking: dict[str, Any] | None = None,
    ) -> None:
        self._code_tool = code_tool  # the function name of code_interpreter, when offered
        # file_search's ranking options, when it is offered (its calls stream as OpenAI's do).
        self._search_ranking = search_ranking
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
                if "code_interpreter" in delta:
                    emitted += len(delta["code_interpreter"].get("input", ""))
                elif "file_search" in delta:
                    pass  # a head only
                else:
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
        if call.code is None and self._code_tool and call.name == self._code_tool:
            call.code = StreamedCode()
            call.code.feed(call.arguments)
        elif call.code is not None:
            call.code.feed(delta.arguments)
        if time.monotonic() - self._last_flush >= self._interval:
            await self.flush()

    async def _append(self, key: str, payload: dict[str, Any]) -> None:
        if not await self._store.tool_calls.append_delta(self._run_id, self._step_id, key, payload):
            raise RunNoLongerActive(self._run_id)

    async def flush(self) -> None:
        for call in self._calls:
            if not call.name:
                continue  # the head needs the function name
            if call.code is not None:
                await self._flush_code(call, call.code)
                continue
            if self._is_search(call):
                await self._flush_search(call)
                continue
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

    def _is_search(self, call: _Call) -> bool:
        return self._search_ranking is not None and call.name == search_tool.TOOL_NAME

    async def _flush_search(self, call: _Call) -> None:
        """A file_search call streams as one head delta, as on the hosted API: the queries are
        the model's business, the results come with `step.completed`."""
        if call.announced:
            return
        await self._append(
            f"tcdelta:{self._step_id}:{call.index}:head",
            {
                "index": call.index,
                "id": call.id,
                "type": search_tool.KIND,
                "file_search": {"ranking_options": self._search_ranking, "results": []},
            },
        )
        call.announced = True

    async def _flush_code(self, call: _Call, code: StreamedCode) -> None:
        if not call.announced:
            await self._append(
                f"tcdelta:{self._step_id}:{call.index}:head",
                {
                    "index": call.index,
                    "id": call.id,
                    "type": "code_interpreter",
                    "code_interpreter": {"input": "", "outputs": []},
                },
            )
            call.announced = True
        if len(code.decoded) > call.emitted:
            await self._append(
                f"tcdelta:{self._step_id}:{call.index}:{call.emitted}",
                {
                    "index": call.index,
                    "type": "code_interpreter",
                    "code_interpreter": {"input": code.decoded[call.emitted :]},
                },
            )
            call.emitted = len(code.decoded)

    async def complete(self, usage: dict[str, int]) -> list[dict[str, Any]]:
        """Flush what is left and store the calls on the step; returns `[{id, name, arguments}]`."""
        await self.flush()
        calls = [
            {"id": c.id, "name": c.name, "arguments": c.arguments}
            | ({"type": "code_interpreter"} if c.code is not None else {})
            | ({"type": search_tool.KIND} if self._is_search(c) else {})
            for c in self._calls
        ]
        stored = await self._store.tool_calls.store_calls(self._run_id, self._step_id, calls, usage)
        if stored is None:
            raise RunNoLongerActive(self._run_id)
        return stored

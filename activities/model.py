"""Calling the model: build the prompt from the store, stream the backend, write the message.

Only ids and counters cross into Temporal history: the prompt is read from the store here and the
text goes straight from the backend to the store and the event log.

`generate` runs as a local activity (workflows/run.py; runs started before that change call it
as a regular one, and then it heartbeats). As a local activity it waits on the worker's run watch
for a cancel, stops after the shutdown grace period when its worker stops, and asks the
store, not its attempt count, whether an earlier attempt already wrote output.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import CallStopped, stoppable
from activities.images import ImageInliner
from activities.messages import MessageWriter, RunNoLongerActive
from activities.run_watch import WATCH_INTERVAL_S, RunWatch
from activities.tool_calls import ToolCallWriter
from assistants.backends import BackendError, ChatBackend, ChatRequest
from assistants.code_interpreter import tool as code_tool
from assistants.errors import APIError
from assistants.file_search import tool as search_tool
from assistants.files import BlobStorage
from assistants.metrics import Metrics
from assistants.prompting import build_prompt, estimate_tokens, prompt_window
from assistants.store import Store
from assistants.store.code_interpreter import CodeInterpreterStore
from assistants.store.file_search import FileSearchStore
from assistants.store.runs import RunEnd
from assistants.tools import ToolRegistry
from workflows.shared import (
    FILES_PENDING,
    RUN_ENDS,
    RUN_NOT_ACTIVE,
    FinishResult,
    GenerateInput,
    GenerateResult,
    ToolCallRef,
    ToolPolicy,
    Usage,
)

log = structlog.get_logger(__name__)


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None or value == "auto":
        return None
    return dict(value)


def _tool_choice(value: Any) -> Any:
    """Run `tool_choice` → Chat Completions `tool_choice` (None: the backend's default, auto)."""
    if value is None or isinstance(value, str):
        return value
    if value.get("type") == "function":
        return {"type": "function", "function": {"name": value["function"]["name"]}}
    if value.get("type") == code_tool.KIND:
        return code_tool.tool_choice()
    if value.get("type") == search_tool.KIND:
        return search_tool.tool_choice()
    return None  # file_search / code_interpreter are not function tools


def _answered(call: GenerateInput, run: Any) -> GenerateResult:
    """The result an earlier attempt of `call` returned, from the run it ended."""
    reason = (run.incomplete_details or {}).get("reason")
    ended = (run.status, reason)
    finish = next((f for f, end in RUN_ENDS.items() if end == ended), "stop")
    total = run.usage or {}
    usage = Usage(
        max(0, int(total.get("prompt_tokens", 0)) - call.prompt_tokens_used),
        max(0, int(total.get("completion_tokens", 0)) - call.completion_tokens_used),
    )
    return GenerateResult(finish=finish, usage=usage)


class ModelActivities:
    def __init__(
        self,
        store: Store,
        backend: ChatBackend,
        flush_interval_s: float = 0.04,
        tools: ToolRegistry | None = None,
        *,
        metrics: Metrics | None = None,
        blobs: BlobStorage | None = None,
        context_tokens: int = 128_000,
        completion_reserve_tokens: int = 4096,
        code_execution_s: float = 60.0,
        shutdown_grace_s: float = 10.0,
        watch_interval_s: float = WATCH_INTERVAL_S,
        watch: RunWatch | None = None,
    ) -> None:
        self._code_execution_s = code_execution_s
        # A model round is a local activity, which the SDK does not cancel at shutdown.
        self._shutdown_grace_s = shutdown_grace_s
        # …nor when its run is cancelled: one watch reads the status of all this worker's runs.
        self._watch = watch or RunWatch(store.runs.statuses, watch_interval_s)
        self._metrics = metrics or Metrics()
        self._context_tokens = context_tokens
        self._completion_reserve_tokens = completion_reserve_tokens
        # Without blob storage, `image_file` parts reach the model as placeholders.
        self._images = ImageInliner(store, blobs) if blobs is not None else None
        self._store = store
        self._searches = FileSearchStore(store.db)
        self._backend = backend
        self._flush_interval_s = flush_interval_s
        self._tools = tools or ToolRegistry()

    def _function_tools(
        self, run_tools: list[dict[str, Any]], search: bool = False
    ) -> list[dict[str, Any]]:
        """The run's function tools for the model. A registered tool declared by name only
        (no `parameters`) gets its schema and description from the registry."""
        result: list[dict[str, Any]] = []
        code = code_tool.enabled(run_tools)
        for tool in run_tools:
            if tool.get("type") != "function":
                continue
            if code and tool["function"]["name"] == code_tool.TOOL_NAME:
                continue  # code_interpreter's own `python` takes the name
            if search and tool["function"]["name"] == search_tool.TOOL_NAME:
                continue  # file_search's own function takes the name
            function = dict(tool["function"])
            registered = self._tools.get(function["name"])
            if registered is not None and "parameters" not in function:
                function = registered.definition()["function"] | {
                    k: v for k, v in function.items() if k in ("description", "strict")
                }
            result.append({"type": "function", "function": function})
        if code:
            result.append(code_tool.definition(self._code_execution_s))
        if search:
            result.append(search_tool.definition())
        return result

    @activity.defn(name="generate")
    async def generate(self, call: GenerateInput) -> GenerateResult:
        local = activity.info().is_local
        start = await self._store.runs.start_round(
            call.run_id,
            call.step_id,
            call.message_id,
            # A local activity's attempt count starts again on the worker that takes over a
            # dead one's workflow task: the store says whether this round wrote output before.
            steps=(call.step_id, call.tool_step_id) if local else (),
            completes=call.completes_step_id,
        )
        run = start.run
        if start.status != "in_progress":
            if call.tool_step_id and start.status in ("requires_action", "completed", "incomplete"):
                # As a local activity: an earlier attempt stored this round's calls and the same
                # workflow task went on (to `requires_action`, or through the calls, run as
                # local activities, to a later round whose answer ended the run), then the
                # worker died before Temporal recorded that task. Report the calls it stored:
                # the calls find their outputs recorded, and the later round finds its answer.
                # Checked before `answered`, which a round's text before its calls also meets.
                earlier = await self._earlier_calls(call.tool_step_id, run.tools)
                if earlier is not None:
                    return earlier
            if start.answered:
                # An earlier attempt stored the answer and ended the run, then its worker died
                # before Temporal heard of it: report what it did.
                hooks = await self._store.webhooks.targets(
                    run.project_id, f"thread.run.{run.status}"
                )
                ended = self._ended(run, run.status, hooks)
                return dataclasses.replace(_answered(call, run), ended=ended)
            raise ApplicationError(
                "the run is no longer in progress", type=RUN_NOT_ACTIVE, non_retryable=True
            )
        if start.resumed and call.tool_step_id:
            # As a local activity: an earlier attempt stored this round's calls, and the same
            # workflow task went on to run them (tools registered with `local=True`, searches),
            # then the worker died before Temporal recorded that task. The stored calls stand
            # (first writer wins), so the model is not asked again: report them, and the calls
            # run again where they have no output yet.
            earlier = await self._earlier_calls(call.tool_step_id, run.tools)
            if earlier is not None:
                return earlier
        bound = log.bind(
            run_id=run.id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            project_id=run.project_id,
            request_id=call.request_id,
        )
        history = start.history
        own_turns: list[dict[str, Any]] = []
        if call.round_index > 0:
            # A later round: this run's own messages and tool calls so far (the first round
            # has none, and skips the read on the way to the first token).
            own_turns = await self._store.tool_calls.run_turns(run.id, call.message_id)
        prompt_budget = None
        if run.max_prompt_tokens is not None:
            prompt_budget = run.max_prompt_tokens - call.prompt_tokens_used
        completion_budget = None
        if run.max_completion_tokens is not None:
            completion_budget = max(1, run.max_completion_tokens - call.completion_tokens_used)
        window = prompt_window(
            self._context_tokens, self._completion_reserve_tokens, completion_budget
        )
        turns = [(m.role, m.content) for m in history]
        if self._images is not None:
            turns = await self._images.inline(run.project_id, turns)
        prompt = build_prompt(
            instructions=run.instructions,
            additional_instructions=run.additional_instructions,
            history=turns,
            truncation=run.truncation_strategy,
            max_prompt_tokens=prompt_budget,
            run_turns=own_turns,
            context_tokens=window,
        )
        if prompt.over_budget:
            bound.info("prompt over max_prompt_tokens", estimated=prompt.estimated_tokens)
            return GenerateResult(finish="prompt_limit", usage=Usage())
        if prompt.over_context:
            # Not even the instructions, the newest turn and this run's own turns fit: no backend
            # would take it, so the run fails now instead of after the backend's 400.
            bound.warning(
                "prompt over the context window", estimated=prompt.estimated_tokens, window=window
            )
            raise ApplicationError(
                f"The prompt (about {prompt.estimated_tokens} tokens with only the newest "
                f"message) does not fit the model's context window of {self._context_tokens} "
                f"tokens less {self._context_tokens - window} kept for the answer.",
                type="invalid_prompt",
                non_retryable=True,
            )
        # file_search is offered when the run has the tool and at least one store to search.
        store_ids = await self._searches.store_ids(run.id) if search_tool.enabled(run.tools) else []
        search = bool(store_ids)
        if search and call.round_index == 0:
            await self._check_stores(run, store_ids)
            pending = await self._searches.pending_thread_files(run.id)
            if pending and time.time() - (run.started_at or 0) < search_tool.THREAD_FILES_WAIT_S:
                bound.info("waiting for the thread's files", in_progress=pending)
                return GenerateResult(finish=FILES_PENDING, usage=Usage())
        tools = self._function_tools(run.tools, search)
        choice = _tool_choice(run.tool_choice) if tools else None
        if not search and choice == search_tool.tool_choice():
            choice = None  # forced, but there is nothing to search
        request = ChatRequest(
            model=run.model,
            messages=prompt.messages,
            temperature=run.temperature,
            top_p=run.top_p,
            max_completion_tokens=completion_budget,
            response_format=_response_format(run.response_format),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=run.parallel_tool_calls if tools else None,
        )
        attempt = activity.info().attempt
        retried = attempt > 1 or start.resumed
        writer = MessageWriter(
            self._store,
            call.run_id,
            call.step_id,
            call.message_id,
            self._flush_interval_s,
            retried=retried,
            citer=await self._searches.citer(run.id) if search and call.round_index > 0 else None,
        )
        calls = ToolCallWriter(
            self._store,
            call.run_id,
            call.tool_step_id,
            self._flush_interval_s,
            retried=retried,
            parallel=bool(run.parallel_tool_calls),
            code_tool=code_tool.TOOL_NAME if code_tool.enabled(run.tools) else None,
            search_ranking=search_tool.ranking_options(run.tools, run.model) if search else None,
        )
        finish_reason: str | None = None
        usage: Usage | None = None
        bound.info("model call", model=run.model, attempt=attempt)
        started = time.monotonic()
        try:
            async with stoppable(
                lambda: self._watch.ended(call.run_id),
                shutdown_grace_s=self._shutdown_grace_s,
            ):
                async for chunk in self._backend.stream(request):
                    if chunk.text and not calls.started:
                        await writer.add(chunk.text)
                    for delta in chunk.tool_calls if call.tool_step_id else ():
                        if not calls.started and writer.text:
                            # One step at a time: the text before the calls is its own
                            # message, finished before the tool_calls step starts.
                            await writer.complete(Usage(), truncated=False)
                        await calls.add(delta)
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            result = await self._finish(
                call, run, prompt.estimated_tokens, writer, calls, usage, finish_reason
            )
            self._metrics.model_call(
                run.model,
                timedelta(seconds=time.monotonic() - started),
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
            )
            return result
        except CallStopped as stopped:
            # The run's watch or the worker's shutdown stopped the call (`stoppable`).
            bound.info("model call stopped", reason=stopped.type)
            raise
        except RunNoLongerActive:
            bound.info("run no longer in progress; model call stopped")
            raise ApplicationError(
                "the run is no longer in progress", type=RUN_NOT_ACTIVE, non_retryable=True
            ) from None
        except BackendError as error:
            bound.warning(
                "model call failed", status=error.status, retryable=error.retryable, attempt=attempt
            )
            message = error.message
            if search and not error.retryable and "tool" in message.lower():
                # file_search reaches the model as a function tool: a backend (or model) that
                # cannot call functions cannot search, and the run says so.
                message = f"{search_tool.NO_TOOLS_MESSAGE} The backend said: {message}"
            raise ApplicationError(
                message,
                type=error.code,
                non_retryable=not error.retryable,
                next_retry_delay=(
                    timedelta(seconds=error.retry_after_s) if error.retry_after_s else None
                ),
            ) from error

    async def _earlier_calls(
        self, tool_step_id: str, run_tools: list[dict[str, Any]]
    ) -> GenerateResult | None:
        earlier = await self._store.tool_calls.stored_round(tool_step_id)
        if earlier is None:
            return None
        stored, spent = earlier
        return GenerateResult(
            finish="tool_calls",
            usage=Usage(int(spent.get("prompt_tokens", 0)), int(spent.get("completion_tokens", 0))),
            tool_calls=self._refs(stored, run_tools),
        )

    async def _finish(
        self,
        call: GenerateInput,
        run: Any,
        prompt_estimate: int,
        writer: MessageWriter,
        calls: ToolCallWriter,
        usage: Usage | None,
        finish_reason: str | None,
    ) -> GenerateResult:
        if usage is None:  # backends that do not report usage: estimate it
            usage = Usage(prompt_estimate, estimate_tokens(writer.text))
        truncated = finish_reason == "length"
        if calls.started:
            stored = await calls.complete(usage.as_object())
            refs = self._refs(stored, run.tools)
            return GenerateResult(finish="tool_calls", usage=usage, tool_calls=refs)
        images: list[str] = []
        annotations: list[dict[str, Any]] = []
        if code_tool.enabled(run.tools) and call.round_index > 0:
            # Images the code displayed in this run go into its message, after the text, and
            # `sandbox:/mnt/data/…` links to files it wrote get `file_path` annotations.
            code_store = CodeInterpreterStore(self._store.db)
            images = await code_store.pending_images(call.run_id)
            annotations = await code_store.annotations(call.run_id, writer.text)
        finish = "length" if truncated else "stop"
        if run.max_prompt_tokens is not None and (
            call.prompt_tokens_used + usage.prompt_tokens > run.max_prompt_tokens
        ):
            finish = "prompt_limit"
        # This answer ends the run: it ends in the answer's commit (the workflow's own
        # `finish_run` then finds it ended, and only notifies).
        total = Usage(
            call.prompt_tokens_used + usage.prompt_tokens,
            call.completion_tokens_used + usage.completion_tokens,
        )
        ended = await writer.complete(
            usage,
            truncated=truncated,
            images=images,
            annotations=annotations,
            end=RunEnd(
                RUN_ENDS[finish][0],
                usage=total.as_object() if total.total_tokens else None,
                incomplete_reason=RUN_ENDS[finish][1],
            ),
        )
        return GenerateResult(
            finish=finish,
            usage=usage,
            ended=self._ended(run, ended.status, ended.webhooks) if ended is not None else None,
        )

    def _ended(self, run: Any, status: str, webhooks: list[str]) -> FinishResult:
        """The answer ended the run: what `finish_run` would have reported, so the workflow
        skips it (one local activity and one commit less per run)."""
        log.info(
            "run finished",
            run_id=run.id,
            thread_id=run.thread_id,
            assistant_id=run.assistant_id,
            status=status,
        )
        self._metrics.run_finished(status)
        return FinishResult(webhooks=webhooks, status=status)

    async def _check_stores(self, run: Any, store_ids: list[str]) -> None:
        """A run uses its stores (their `last_active_at` moves); an expired or missing one ends
        the run, naming the store."""
        try:
            await self._store.vector_stores.get_searchable(run.project_id, store_ids)
        except APIError as error:
            raise ApplicationError(
                f"file_search cannot use the run's vector stores: {error.message}",
                type="server_error",
                non_retryable=True,
            ) from None

    def _refs(
        self, stored: list[dict[str, Any]], run_tools: list[dict[str, Any]]
    ) -> list[ToolCallRef]:
        return [
            ToolCallRef(call_id=c["id"], name=c["name"], kind=c["type"])
            if c.get("type") in (code_tool.KIND, search_tool.KIND)
            else ToolCallRef(
                call_id=c["id"],
                name=c["name"],
                policy=self._registered_policy(c["name"], run_tools),
            )
            for c in stored
        ]

    def _registered_policy(self, name: str, run_tools: list[dict[str, Any]]) -> ToolPolicy | None:
        """The worker runs a call itself when the function is registered here and is one of the
        run's tools; the decision (with the tool's policy) is recorded in history with the result,
        so a replay never depends on what a later worker has registered."""
        declared = {t["function"]["name"] for t in run_tools if t.get("type") == "function"}
        tool = self._tools.get(name)
        return tool.policy if tool is not None and name in declared else None

"""Calling the model: build the prompt from the store, stream the backend, write the message.

Only ids and counters cross into Temporal history: the prompt is read from the store here and the
text goes straight from the backend to the store and the event log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.messages import MessageWriter, RunNoLongerActive
from assistants.backends import BackendError, ChatBackend, ChatRequest
from assistants.prompting import build_prompt, estimate_tokens
from assistants.store import Store
from workflows.shared import RUN_NOT_ACTIVE, GenerateInput, GenerateResult, Usage

log = structlog.get_logger(__name__)


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None or value == "auto":
        return None
    return dict(value)


class ModelActivities:
    def __init__(self, store: Store, backend: ChatBackend, flush_interval_s: float = 0.04) -> None:
        self._store = store
        self._backend = backend
        self._flush_interval_s = flush_interval_s

    @activity.defn(name="generate")
    async def generate(self, call: GenerateInput) -> GenerateResult:
        if await self._store.runs.mark_in_progress(call.run_id) != "in_progress":
            raise ApplicationError(
                "the run is no longer in progress", type=RUN_NOT_ACTIVE, non_retryable=True
            )
        run = await self._store.runs.load(call.run_id)
        bound = log.bind(run_id=run.id, thread_id=run.thread_id, assistant_id=run.assistant_id)
        history = await self._store.runs.context_messages(run.thread_id, call.message_id)
        prompt_budget = None
        if run.max_prompt_tokens is not None:
            prompt_budget = run.max_prompt_tokens - call.prompt_tokens_used
        prompt = build_prompt(
            instructions=run.instructions,
            additional_instructions=run.additional_instructions,
            history=[(m.role, m.content) for m in history],
            truncation=run.truncation_strategy,
            max_prompt_tokens=prompt_budget,
        )
        if prompt.over_budget:
            bound.info("prompt over max_prompt_tokens", estimated=prompt.estimated_tokens)
            return GenerateResult(finish="prompt_limit", usage=Usage())
        completion_budget = None
        if run.max_completion_tokens is not None:
            completion_budget = max(1, run.max_completion_tokens - call.completion_tokens_used)
        request = ChatRequest(
            model=run.model,
            messages=prompt.messages,
            temperature=run.temperature,
            top_p=run.top_p,
            max_completion_tokens=completion_budget,
            response_format=_response_format(run.response_format),
        )
        attempt = activity.info().attempt
        writer = MessageWriter(
            self._store,
            call.run_id,
            call.step_id,
            call.message_id,
            self._flush_interval_s,
            retried=attempt > 1,
        )
        finish_reason: str | None = None
        usage: Usage | None = None
        bound.info("model call", model=run.model, attempt=attempt)
        try:
            async with heartbeating():
                async for chunk in self._backend.stream(request):
                    if chunk.text:
                        await writer.add(chunk.text)
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        except RunNoLongerActive:
            bound.info("run no longer in progress; model call stopped")
            raise ApplicationError(
                "the run is no longer in progress", type=RUN_NOT_ACTIVE, non_retryable=True
            ) from None
        except BackendError as error:
            bound.warning(
                "model call failed", status=error.status, retryable=error.retryable, attempt=attempt
            )
            raise ApplicationError(
                error.message,
                type=error.code,
                non_retryable=not error.retryable,
                next_retry_delay=(
                    timedelta(seconds=error.retry_after_s) if error.retry_after_s else None
                ),
            ) from error
        if usage is None:  # backends that do not report usage: estimate it
            usage = Usage(prompt.estimated_tokens, estimate_tokens(writer.text))
        truncated = finish_reason == "length"
        await writer.complete(usage, truncated=truncated)
        if run.max_prompt_tokens is not None and (
            call.prompt_tokens_used + usage.prompt_tokens > run.max_prompt_tokens
        ):
            return GenerateResult(finish="prompt_limit", usage=usage)
        return GenerateResult(finish="length" if truncated else "stop", usage=usage)

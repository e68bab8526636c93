"""Running a model's file_search call: embed its queries, rank the run's stores, record results.

One activity per call, idempotent: the results go onto the call in the store (first writer wins)
and the activity returns nothing, so neither queries nor chunk text cross Temporal history. The
stores are the assistant's and the thread's `tool_resources` stores of the run's own project
(the chunk store applies the same project scope and visibility rule as `vector_stores.search`).
Searching a store counts as activity for its expiry; an expired or missing store fails the call
with `vector_store_unavailable`, which ends the run with that message as its `last_error`.
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import stoppable
from activities.run_watch import RunWatch
from assistants.errors import APIError
from assistants.file_search import tool as search_tool
from assistants.retrieval import Embedder, EmbeddingError
from assistants.store import Store
from assistants.store.file_search import FileSearchStore
from assistants.store.ranking import Weights
from workflows.shared import ToolCallInput

log = structlog.get_logger(__name__)

STORE_UNAVAILABLE = "vector_store_unavailable"


class FileSearchActivities:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        weights: Weights | None = None,
        *,
        watch: RunWatch | None = None,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        # A local activity (workflows/file_search_calls.py): a cancelled run stops its search.
        self._watch = watch or RunWatch(store.runs.statuses)
        self._shutdown_grace_s = shutdown_grace_s
        self._store = store
        self._searches = FileSearchStore(store.db)
        self._embedder = embedder
        self._weights = weights or Weights()

    @activity.defn(name="file_search")
    async def search(self, call: ToolCallInput) -> None:
        plan = await self._searches.plan(call.run_id, call.step_id, call.call_id)
        if plan.done:
            return  # an earlier attempt recorded the results
        bound = log.bind(run_id=call.run_id, call_id=call.call_id, request_id=call.request_id)
        if not plan.queries:
            await self._searches.record(
                call.run_id, call.step_id, call.call_id, [], error="no search queries were given"
            )
            return
        try:
            stores = await self._store.vector_stores.get_searchable(
                plan.project_id, plan.vector_store_ids
            )
        except APIError as error:
            # Expired (or deleted) store: the run cannot answer from the files it was given.
            raise ApplicationError(
                f"file_search could not use the run's vector stores: {error.message}",
                type=STORE_UNAVAILABLE,
                non_retryable=True,
            ) from None
        embedder = self._embedder
        usable = [
            s.id
            for s in stores
            if (s.embedding_model, s.embedding_dims) == (embedder.model, embedder.dimensions)
        ]
        if len(usable) < len(stores):
            bound.warning("vector stores built with another embedding model skipped")
        results: list[dict[str, object]] = []
        if usable:
            try:
                async with stoppable(
                    lambda: self._watch.ended(call.run_id),
                    shutdown_grace_s=self._shutdown_grace_s,
                ):
                    vectors = await embedder.embed(plan.queries)
            except EmbeddingError as error:
                raise ApplicationError(
                    f"The embedding service failed: {error.message}",
                    type="embedding_error",
                    non_retryable=not error.retryable,
                ) from None
            hits = await self._store.chunks.search(
                plan.project_id,
                usable,
                plan.queries,
                vectors,
                max_num_results=plan.max_num_results,
                score_threshold=plan.score_threshold,
                ranker=search_tool.search_ranker(plan.ranker),
                weights=self._weights,
            )
            budget = search_tool.RESULT_CHARS_BUDGET
            for hit in hits:
                if results and len(hit.text) > budget:
                    break  # the hosted tool's token budget: fewer results than asked
                budget -= len(hit.text)
                results.append(
                    {
                        "file_id": hit.file_id,
                        "file_name": hit.filename,
                        "score": round(float(hit.score), 6),
                        "content": [{"type": "text", "text": hit.text}],
                    }
                )
        await self._searches.record(call.run_id, call.step_id, call.call_id, results)
        bound.info("file_search", stores=len(usable), queries=len(plan.queries), hits=len(results))

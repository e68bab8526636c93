"""The store's side of file_search in runs: which stores a run searches, its calls and results.

A file_search call lives on its `tool_calls` step like any other call. The search activity writes
the call's results there (first writer wins, so a retried activity changes nothing), with the chunk
text each result carries: the next model round builds the `tool` message from it and the
citations take their `quote` from it, so no chunk text crosses Temporal history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from assistants.file_search import tool as search_tool
from assistants.file_search.citations import Citer
from assistants.store.db import Database
from assistants.store.prepared import select_one
from assistants.store.runs import run_row
from assistants.store.tables import assistants, run_steps, threads, vector_store_files

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class SearchPlan:
    """What one search call needs: the run's scope, its stores, its options and its queries."""

    project_id: str
    model: str
    vector_store_ids: list[str]
    queries: list[str]
    max_num_results: int
    ranker: str
    score_threshold: float
    done: bool  # an earlier attempt recorded the results


def _store_ids(resources: Any) -> list[str]:
    search = (resources or {}).get("file_search") or {}
    return [str(i) for i in search.get("vector_store_ids") or []]


def run_store_ids(conn: Connection, run: Any) -> list[str]:
    """The assistant's and the thread's file_search stores, in that order (of the run's
    project only: both rows are read scoped to it)."""
    assistant = conn.execute(
        select(assistants.c.tool_resources).where(
            assistants.c.id == run.assistant_id, assistants.c.project_id == run.project_id
        )
    ).first()
    thread = conn.execute(
        select(threads.c.tool_resources).where(
            threads.c.id == run.thread_id, threads.c.project_id == run.project_id
        )
    ).first()
    ids = _store_ids(assistant.tool_resources if assistant else None)
    ids += _store_ids(thread.tool_resources if thread else None)
    return list(dict.fromkeys(ids))


def _ordinals_before(conn: Connection, run_id: str) -> int:
    """How many file_search calls the run's steps already hold (the next call's marker ordinal)."""
    rows = conn.execute(
        select(run_steps.c.step_details).where(
            run_steps.c.run_id == run_id, run_steps.c.type == "tool_calls"
        )
    ).all()
    return sum(
        1
        for row in rows
        for call in (row.step_details or {}).get("tool_calls") or []
        if call.get("type") == search_tool.KIND
    )


def new_calls(conn: Connection, run: Any, calls: list[JSONDict]) -> dict[str, JSONDict]:
    """The stored form of a round's `file_search` function calls, by call id (called in the
    transaction that stores the round's calls)."""
    ranking = search_tool.ranking_options(run.tools, run.model)
    ordinal = _ordinals_before(conn, run.id)
    stored: dict[str, JSONDict] = {}
    for call in calls:
        if call.get("type") != search_tool.KIND:
            continue
        stored[call["id"]] = {
            "id": call["id"],
            "type": search_tool.KIND,
            "file_search": {
                "ranking_options": ranking,
                "results": [],
            },
            search_tool.PRIVATE: {
                "arguments": call["arguments"],
                "ordinal": ordinal,
                "done": False,
                "error": None,
            },
        }
        ordinal += 1
    return stored


def call_ref(call: JSONDict) -> JSONDict:
    """A stored file_search call as the model activity reports it (`{id, type, name, args}`)."""
    return {
        "id": call["id"],
        "type": search_tool.KIND,
        "name": search_tool.TOOL_NAME,
        "arguments": call[search_tool.PRIVATE]["arguments"],
    }


def call_turn(call: JSONDict) -> JSONDict:
    """A file_search call as the model made it (a function call) and what it read back."""
    private = call[search_tool.PRIVATE]
    return {
        "id": call["id"],
        "type": "function",
        "function": {
            "name": search_tool.TOOL_NAME,
            "arguments": private["arguments"],
            "output": search_tool.model_output(
                private["ordinal"], call["file_search"]["results"], private.get("error")
            ),
        },
    }


def _find(details: JSONDict, call_id: str) -> JSONDict:
    for call in details.get("tool_calls") or []:
        if call["id"] == call_id:
            return dict(call)
    raise LookupError(f"no tool call {call_id}")


class FileSearchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_ids(self, run_id: str) -> list[str]:
        """The stores the run's file_search searches (none: the tool is not offered)."""
        return await self._db.read(lambda conn: run_store_ids(conn, run_row(conn, run_id)))

    async def pending_thread_files(self, run_id: str) -> int:
        """How many files of the run's thread store are still being ingested (the hosted API
        waits for those, not for the assistant's store)."""

        def tx(conn: Connection) -> int:
            run = run_row(conn, run_id)
            thread = conn.execute(
                select(threads.c.tool_resources).where(
                    threads.c.id == run.thread_id, threads.c.project_id == run.project_id
                )
            ).first()
            ids = _store_ids(thread.tool_resources if thread else None)
            if not ids:
                return 0
            return int(
                conn.execute(
                    select(func.count()).where(
                        vector_store_files.c.vector_store_id.in_(ids),
                        vector_store_files.c.project_id == run.project_id,
                        vector_store_files.c.status == "in_progress",
                    )
                ).scalar_one()
            )

        return await self._db.read(tx)

    async def plan(self, run_id: str, step_id: str, call_id: str) -> SearchPlan:
        def tx(conn: Connection) -> SearchPlan:
            run = run_row(conn, run_id)
            call = _find(select_one(conn, run_steps, step_id).step_details, call_id)
            private = call[search_tool.PRIVATE]
            max_results, ranker, threshold = search_tool.options(run.tools, run.model)
            return SearchPlan(
                project_id=run.project_id,
                model=run.model,
                vector_store_ids=run_store_ids(conn, run),
                queries=search_tool.parse_queries(private["arguments"]),
                max_num_results=max_results,
                ranker=ranker,
                score_threshold=threshold,
                done=bool(private["done"]),
            )

        return await self._db.read(tx)

    async def record(
        self,
        run_id: str,
        step_id: str,
        call_id: str,
        results: list[JSONDict],
        error: str | None = None,
    ) -> None:
        """The call's results (`{file_id, file_name, score, content}`) or its error; first writer
        wins."""

        def tx(conn: Connection) -> None:
            run_row(conn, run_id, lock=True)
            details = select_one(conn, run_steps, step_id).step_details
            for call in details["tool_calls"]:
                private = call.get(search_tool.PRIVATE)
                if call["id"] != call_id or private is None or private["done"]:
                    continue
                call["file_search"]["results"] = results
                private["done"], private["error"] = True, error
                conn.execute(
                    update(run_steps).where(run_steps.c.id == step_id).values(step_details=details)
                )

        await self._db.write(tx)

    async def citer(self, run_id: str) -> Citer:
        """What the run's markers can cite: every result of its searches so far."""

        def tx(conn: Connection) -> Citer:
            rows = conn.execute(
                select(run_steps.c.step_details).where(
                    run_steps.c.run_id == run_id, run_steps.c.type == "tool_calls"
                )
            ).all()
            citer = Citer()
            for row in rows:
                for call in (row.step_details or {}).get("tool_calls") or []:
                    private = call.get(search_tool.PRIVATE)
                    if call.get("type") != search_tool.KIND or private is None:
                        continue
                    for rank, result in enumerate(call["file_search"]["results"]):
                        quote = "".join(c.get("text", "") for c in result.get("content") or [])
                        citer.sources[(int(private["ordinal"]), rank)] = (result["file_id"], quote)
            return citer

        return await self._db.read(tx)

"""`tool_resources.file_search` on assistant, thread and create-and-run requests.

`vector_store_ids` must name stores of the caller's project. The create helper
`vector_stores: [{file_ids, chunking_strategy?, metadata?}]` (assistant and thread create only,
as in the spec) creates a store, fills it through an internal file batch, and the object is
stored and answered with the new store's id in `vector_store_ids`. A thread's helper store expires
7 days after it was last active (OpenAI's default for thread stores).

Everything is checked before anything is written (a 400 for an unknown file or store id), and the
store is created inside the transaction that creates the assistant or thread (`prepare`), so a
request either writes both or neither; ingestion starts after the commit (`launch`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from assistants.api.context import Services
from assistants.errors import InvalidRequest
from assistants.requests import ToolResources
from assistants.retrieval import embedder_from_settings, static_chunking_strategy
from assistants.store.vector_store_files import FileSpec, IngestionPlan, require_files
from assistants.store.vector_stores import (
    Embedding,
    create_store_tx,
    expiry_seconds,
    require_vector_stores,
)

JSONDict = dict[str, Any]
THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": 7}


class FileSearchResources:
    """The file_search part of one request: `check` (reads), `prepare` (in the creating
    transaction), `launch` (after the commit)."""

    def __init__(
        self,
        svc: Services,
        project_id: str,
        resources: ToolResources | None,
        prefix: str,
        *,
        helper_allowed: bool,
        thread: bool = False,
    ) -> None:
        self._svc = svc
        self._project_id = project_id
        self._prefix = f"{prefix}.file_search"
        self._thread = thread
        search = resources.file_search if resources is not None else None
        self._store_ids = list(search.vector_store_ids) if search is not None else []
        self._helper: JSONDict | None = None
        self._plans: list[IngestionPlan] = []
        helpers = search.vector_stores if search is not None else None
        if helpers and not helper_allowed:
            param = f"{self._prefix}.vector_stores"
            raise InvalidRequest(
                f"Unknown parameter: '{param}'. Only 'vector_store_ids' can be set here.",
                param=param,
                code="unknown_parameter",
            )
        if helpers:
            helper = helpers[0]
            where = f"{self._prefix}.vector_stores[0]"
            chunking = static_chunking_strategy(
                helper.chunking_strategy.model_dump() if helper.chunking_strategy else None,
                param=f"{where}.chunking_strategy",
            )
            self._helper = {
                "file_ids": list(dict.fromkeys(helper.file_ids)),
                "chunking": chunking,
                "metadata": helper.metadata or {},
                "param": f"{where}.file_ids[{{index}}]",
            }

    async def check(self) -> None:
        """The 400s, before anything is written."""
        if not self._store_ids and self._helper is None:
            return

        def tx(conn: Connection) -> None:
            self._validate(conn)

        await self._svc.store.db.read(tx)

    def _validate(self, conn: Connection) -> None:
        require_vector_stores(
            conn, self._project_id, self._store_ids, param=f"{self._prefix}.vector_store_ids"
        )
        if self._helper is not None:
            require_files(
                conn, self._project_id, self._helper["file_ids"], param=self._helper["param"]
            )

    def prepare(self, conn: Connection, tool_resources: JSONDict | None) -> JSONDict | None:
        """Inside the creating transaction: check again (a store or file may have gone since),
        create the helper's store, and put its id where the helper was."""
        self._validate(conn)
        helper = self._helper
        if helper is None or tool_resources is None:
            return tool_resources
        settings = self._svc.settings
        embedder = embedder_from_settings(settings)
        expires_after = THREAD_STORE_EXPIRY if self._thread else None
        store, plan = create_store_tx(
            conn,
            self._project_id,
            name=None,
            metadata=helper["metadata"],
            expires_after=expires_after,
            embedding=Embedding(embedder.model, embedder.dimensions),
            files=[FileSpec(f, helper["chunking"], {}) for f in helper["file_ids"]],
            expires_after_s=expiry_seconds(expires_after, settings.vector_store_day_s),
            param=helper["param"],
        )
        self._plans.append(plan)
        return {**tool_resources, "file_search": {"vector_store_ids": [store["id"]]}}

    async def launch(self) -> None:
        for plan in self._plans:
            await self._svc.ingestion.launch(plan)

"""Vector stores: create, read, modify, delete, list, and what search and expiry need.

A store's `status`, `file_counts` and `usage_bytes` are never stored: every read derives them from
its `vector_store_files` rows in the same query (GROUP BY status), so they cannot drift from the
files the SDK's pollers look at. Writes that attach files return an `IngestionPlan`, which the API
hands to the ingestion launcher once the transaction has committed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.tables import vector_store_file_batches, vector_store_files, vector_stores
from assistants.store.tool_resources import drop_references
from assistants.store.vector_store_files import (
    FileSpec,
    IngestionPlan,
    attach_files,
    detach_all,
    file_stats,
    require_files,
    store_row,
)

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Embedding:
    """The embedding model a store is built (and searched) with."""

    model: str
    dimensions: int


@dataclass(frozen=True)
class SearchableStore:
    id: str
    embedding_model: str
    embedding_dims: int


@dataclass(frozen=True)
class ExpiryCheck:
    """What the expiry workflow learns: the store is done (expired now or earlier, deleted, or no
    longer expiring), or it expires at `expires_at` (which activity may have moved)."""

    done: bool
    expires_at: int | None = None


def vector_store_object(row: Row[Any], counts: dict[str, int], usage_bytes: int) -> JSONDict:
    if row.expired:
        status = "expired"
    elif counts["in_progress"]:
        status = "in_progress"
    else:
        status = "completed"
    obj: JSONDict = {
        "id": row.id,
        "object": "vector_store",
        "created_at": row.created_at,
        "name": row.name or "",  # the spec's `name` is a required string
        "usage_bytes": usage_bytes,
        "file_counts": counts,
        "status": status,
        "expires_at": row.expires_at,
        "last_active_at": row.last_active_at,
        "metadata": row.metadata,
    }
    if row.expires_after is not None:  # optional and not nullable in the spec
        obj["expires_after"] = row.expires_after
    return obj


def store_objects(conn: Connection, rows: Sequence[Row[Any]]) -> list[JSONDict]:
    stats = file_stats(conn, vector_store_files.c.vector_store_id, [r.id for r in rows])
    return [vector_store_object(row, *stats[row.id]) for row in rows]


def expiry_seconds(expires_after: JSONDict | None, day_s: float) -> int | None:
    """The policy `{anchor: last_active_at, days}` in seconds (`day_s` is a day's length)."""
    if not expires_after:
        return None
    return math.ceil(int(expires_after["days"]) * day_s)


def expires_at(expires_after_s: int | None, last_active_at: int) -> int | None:
    return None if expires_after_s is None else last_active_at + expires_after_s


def require_vector_stores(
    conn: Connection, project_id: str, vector_store_ids: Sequence[str], *, param: str
) -> None:
    """`tool_resources.file_search.vector_store_ids` must name stores of the project: a 400
    naming the parameter otherwise (another project's store is answered the same)."""
    if not vector_store_ids:
        return
    found = set(
        conn.scalars(
            select(vector_stores.c.id).where(
                vector_stores.c.project_id == project_id,
                vector_stores.c.id.in_(list(vector_store_ids)),
            )
        )
    )
    for index, vector_store_id in enumerate(vector_store_ids):
        if vector_store_id not in found:
            where = f"{param}[{index}]"
            raise InvalidRequest(
                f"Invalid '{where}': no vector store found with id '{vector_store_id}'.",
                param=where,
                code="invalid_value",
            )


def create_store_tx(
    conn: Connection,
    project_id: str,
    *,
    name: str | None,
    metadata: dict[str, str],
    expires_after: JSONDict | None,
    embedding: Embedding,
    files: Sequence[FileSpec],
    expires_after_s: int | None,
    param: str = "file_ids[{index}]",
) -> tuple[JSONDict, IngestionPlan]:
    """Insert a store (and, with files, an internal batch holding them), in the caller's
    transaction. Unknown file ids raise before anything is written."""
    require_files(conn, project_id, [spec.file_id for spec in files], param=param)
    vector_store_id = new_id("vs")
    now = int(time.time())
    conn.execute(
        vector_stores.insert().values(
            id=vector_store_id,
            project_id=project_id,
            created_at=now,
            name=name,
            metadata=metadata,
            expires_after=expires_after,
            expires_after_s=expires_after_s,
            expires_at=expires_at(expires_after_s, now),
            last_active_at=now,
            embedding_model=embedding.model,
            embedding_dims=embedding.dimensions,
            expired=False,
            expiry_scheduled=expires_after is None,
        )
    )
    plan = IngestionPlan(project_id=project_id, vector_store_id=vector_store_id)
    if files:
        batch_id = new_id("vsfb")
        conn.execute(
            vector_store_file_batches.insert().values(
                id=batch_id,
                project_id=project_id,
                vector_store_id=vector_store_id,
                created_at=now,
                status="in_progress",
                workflow_started=False,
            )
        )
        plan = attach_files(conn, project_id, vector_store_id, files, batch_id=batch_id)
    plan.schedule_expiry = expires_after is not None
    row = conn.execute(select(vector_stores).where(vector_stores.c.id == vector_store_id)).one()
    return store_objects(conn, [row])[0], plan


class VectorStoreStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        project_id: str,
        *,
        name: str | None,
        metadata: dict[str, str],
        expires_after: JSONDict | None,
        embedding: Embedding,
        files: Sequence[FileSpec],
        day_s: float,
    ) -> tuple[JSONDict, IngestionPlan]:
        return await self._db.write(
            lambda conn: create_store_tx(
                conn,
                project_id,
                name=name,
                metadata=metadata,
                expires_after=expires_after,
                embedding=embedding,
                files=files,
                expires_after_s=expiry_seconds(expires_after, day_s),
            )
        )

    async def get(self, project_id: str, vector_store_id: str) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            return store_objects(conn, [store_row(conn, project_id, vector_store_id)])[0]

        return await self._db.read(tx)

    async def list_stores(self, project_id: str, page: PageParams) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            result = fetch_page(conn, vector_stores, vector_stores.c.project_id == project_id, page)
            return list_object(store_objects(conn, result.rows), result.has_more)

        return await self._db.read(tx)

    async def modify(
        self, project_id: str, vector_store_id: str, fields: JSONDict, *, day_s: float
    ) -> tuple[JSONDict, bool]:
        """Returns the store and whether its expiry workflow must be (re)started: the policy
        changed and the store has not expired."""

        def tx(conn: Connection) -> tuple[JSONDict, bool]:
            row = store_row(conn, project_id, vector_store_id, lock=True)
            values = dict(fields)
            reschedule = False
            if "expires_after" in fields and not row.expired:
                anchor = row.last_active_at or row.created_at
                seconds = expiry_seconds(fields["expires_after"], day_s)
                values["expires_after_s"] = seconds
                values["expires_at"] = expires_at(seconds, anchor)
                reschedule = fields["expires_after"] is not None
                values["expiry_scheduled"] = not reschedule
            if values:
                conn.execute(
                    update(vector_stores).where(vector_stores.c.seq == row.seq).values(**values)
                )
            fresh = conn.execute(select(vector_stores).where(vector_stores.c.seq == row.seq)).one()
            return store_objects(conn, [fresh])[0], reschedule

        return await self._db.write(tx)

    async def delete(self, project_id: str, vector_store_id: str) -> tuple[JSONDict, IngestionPlan]:
        """The store, its files' rows and chunks, and its batches, in one transaction. The plan
        lists the ingestions still in flight, for the launcher to cancel."""

        def tx(conn: Connection) -> IngestionPlan:
            row = store_row(conn, project_id, vector_store_id, lock=True)
            plan = detach_all(conn, project_id, vector_store_id)
            conn.execute(
                vector_store_file_batches.delete().where(
                    vector_store_file_batches.c.vector_store_id == vector_store_id
                )
            )
            conn.execute(vector_stores.delete().where(vector_stores.c.seq == row.seq))
            drop_references(conn, project_id, "file_search", "vector_store_ids", vector_store_id)
            plan.end_expiry = row.expires_after is not None and not row.expired
            return plan

        plan = await self._db.write(tx)
        return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}, plan

    async def get_searchable(
        self, project_id: str, vector_store_ids: Sequence[str], *, param: str | None = None
    ) -> list[SearchableStore]:
        """The stores a search (or a run's file_search) may use, in the order given: an unknown
        id (or another project's) is a 404, an expired store a 400. Using a store is activity: its
        `last_active_at` (and so its `expires_at`) moves to now (a write at most once a second
        per store, so searches stay reads)."""
        wanted = list(dict.fromkeys(vector_store_ids))
        now = int(time.time())

        def read(conn: Connection) -> tuple[list[SearchableStore], list[str]]:
            rows = {
                row.id: row
                for row in conn.execute(
                    select(vector_stores).where(
                        vector_stores.c.project_id == project_id, vector_stores.c.id.in_(wanted)
                    )
                )
            }
            found, stale = [], []
            for vector_store_id in wanted:
                row = rows.get(vector_store_id)
                if row is None:
                    raise NotFound.object("vector store", vector_store_id, param=param)
                if row.expired:
                    raise InvalidRequest(
                        f"Vector store {vector_store_id} has expired: it can no longer be "
                        "searched. Create a new vector store.",
                        param=param,
                        code="vector_store_expired",
                    )
                if (row.last_active_at or 0) < now:
                    stale.append(row.id)
                found.append(SearchableStore(row.id, row.embedding_model, row.embedding_dims))
            return found, stale

        def touch(conn: Connection) -> None:
            for vector_store_id in stale:
                conn.execute(
                    update(vector_stores)
                    .where(
                        vector_stores.c.id == vector_store_id,
                        vector_stores.c.expired.is_(False),
                        vector_stores.c.last_active_at < now,
                    )
                    .values(
                        last_active_at=now,
                        expires_at=vector_stores.c.expires_after_s + now,  # NULL stays NULL
                    )
                )

        found, stale = await self._db.read(read)
        if stale:
            await self._db.write(touch)
        return found

    async def check_expiry(self, vector_store_id: str) -> ExpiryCheck:
        """For the expiry workflow: mark the store expired if its time has come."""

        def tx(conn: Connection) -> ExpiryCheck:
            row = conn.execute(
                select(vector_stores).where(vector_stores.c.id == vector_store_id).with_for_update()
            ).first()
            if row is None or row.expired or row.expires_at is None:
                return ExpiryCheck(done=True)
            if time.time() < row.expires_at:
                return ExpiryCheck(done=False, expires_at=row.expires_at)
            conn.execute(
                update(vector_stores).where(vector_stores.c.seq == row.seq).values(expired=True)
            )
            return ExpiryCheck(done=True, expires_at=row.expires_at)

        return await self._db.write(tx)

    async def unscheduled_expiries(self, limit: int = 100) -> list[str]:
        """Stores whose expiry workflow may not exist (its start failed): for the sweeper."""

        def tx(conn: Connection) -> list[str]:
            return list(
                conn.scalars(
                    select(vector_stores.c.id)
                    .where(
                        vector_stores.c.expiry_scheduled.is_(False),
                        vector_stores.c.expired.is_(False),
                    )
                    .limit(limit)
                )
            )

        return await self._db.read(tx)

    async def mark_expiry_scheduled(self, vector_store_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                update(vector_stores)
                .where(vector_stores.c.id == vector_store_id)
                .values(expiry_scheduled=True)
            )
        )

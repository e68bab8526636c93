"""Files in vector stores and file batches: attach, read, list, update, detach, cancel.

Attaching writes the `vector_store_files` rows as `in_progress` (a batch and its files in one
transaction) and returns an `IngestionPlan`; the API starts the ingestion workflows from it after
the commit. Re-attaching a file bumps its `generation`: the previous ingestion's chunks go at once,
and its writes stop matching the row. Cancel, detach and file deletion delete the rows' chunks in
the same transaction (row first, then chunks: the ingestion's guarded insert locks the row, so
the two serialise on PostgreSQL), which is what makes "cancelled files leave no chunks behind" and
"a deleted file stops matching at once" hold whatever the in-flight ingestion does next.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, select, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest, NotFound
from assistants.ids import new_id
from assistants.store.chunks import delete_file as delete_chunks
from assistants.store.chunks import delete_store as delete_store_chunks
from assistants.store.db import Database
from assistants.store.files import missing_file_ids
from assistants.store.pagination import PageParams, list_object
from assistants.store.tables import (
    parsed_files,
    vector_store_file_batches,
    vector_store_files,
    vector_stores,
)

JSONDict = dict[str, Any]
STATUSES = ("in_progress", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class FileSpec:
    """One file to attach: its chunking (the static form) and attributes."""

    file_id: str
    chunking_strategy: JSONDict
    attributes: JSONDict


@dataclass(frozen=True)
class FileJob:
    """One file's ingestion: the generation it works on."""

    file_id: str
    generation: int


@dataclass
class IngestionPlan:
    """What the launcher does once a write has committed: start the batch's workflow (or each
    file's, without a batch), cancel ingestions that were superseded, (re)schedule or end the
    store's expiry timer."""

    project_id: str
    vector_store_id: str
    batch_id: str | None = None
    start: list[FileJob] = field(default_factory=list)
    cancel: list[FileJob] = field(default_factory=list)
    cancel_batches: list[str] = field(default_factory=list)
    schedule_expiry: bool = False
    end_expiry: bool = False  # the store is gone: its expiry timer can stop


def empty_counts() -> dict[str, int]:
    return {status: 0 for status in (*STATUSES, "total")}


def file_stats(
    conn: Connection, column: Any, keys: Sequence[str]
) -> dict[str, tuple[dict[str, int], int]]:
    """Per key of `column` (a store id or a batch id): the file counts and the usage bytes."""
    out = {key: (empty_counts(), 0) for key in keys}
    if not keys:
        return out
    rows = conn.execute(
        select(
            column,
            vector_store_files.c.status,
            func.count(),
            func.coalesce(func.sum(vector_store_files.c.usage_bytes), 0),
        )
        .where(column.in_(list(keys)))
        .group_by(column, vector_store_files.c.status)
    ).all()
    usage = dict.fromkeys(keys, 0)
    for key, status, count, used in rows:
        counts = out[key][0]
        counts[status] = counts.get(status, 0) + int(count)
        counts["total"] += int(count)
        usage[key] += int(used)
    return {key: (out[key][0], usage[key]) for key in keys}


def store_row(
    conn: Connection, project_id: str, vector_store_id: str, *, lock: bool = False
) -> Row[Any]:
    query = select(vector_stores).where(
        vector_stores.c.id == vector_store_id, vector_stores.c.project_id == project_id
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound.object("vector store", vector_store_id)
    return row


def writable_store(conn: Connection, project_id: str, vector_store_id: str) -> Row[Any]:
    """The store, locked, for attaching files: an expired store takes no more files."""
    row = store_row(conn, project_id, vector_store_id, lock=True)
    if row.expired:
        raise InvalidRequest(
            f"Vector store {vector_store_id} has expired: it can no longer be changed or "
            "searched. Create a new vector store.",
            code="vector_store_expired",
        )
    return row


def vector_store_file_object(row: Row[Any]) -> JSONDict:
    return {
        "id": row.file_id,
        "object": "vector_store.file",
        "usage_bytes": row.usage_bytes,
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": row.status,
        "last_error": row.last_error,
        "chunking_strategy": row.chunking_strategy,
        "attributes": row.attributes,
    }


def batch_object(row: Row[Any], counts: dict[str, int]) -> JSONDict:
    status = row.status
    if status == "in_progress" and not counts["in_progress"]:
        status = "completed"  # derived, like the counts: nothing left to ingest
    return {
        "id": row.id,
        "object": "vector_store.files_batch",
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": status,
        "file_counts": counts,
    }


def require_files(
    conn: Connection, project_id: str, file_ids: Sequence[str], *, param: str
) -> None:
    """Unknown file ids (or another project's: the same answer) are a 400 naming the parameter,
    before anything is written. `param` names one parameter, or one per item with `{index}`
    (`file_ids[{index}]`, `files[{index}].file_id`)."""
    missing = missing_file_ids(conn, project_id, file_ids)
    if missing:
        where = param.format(index=list(file_ids).index(missing[0]))
        raise InvalidRequest(
            f"Invalid '{where}': no file found with id '{missing[0]}'.",
            param=where,
            code="invalid_value",
        )


def attach_files(
    conn: Connection,
    project_id: str,
    vector_store_id: str,
    files: Sequence[FileSpec],
    *,
    batch_id: str | None,
) -> IngestionPlan:
    """(Re)attach `files` (known to exist) as `in_progress`, in the caller's transaction."""
    plan = IngestionPlan(project_id=project_id, vector_store_id=vector_store_id, batch_id=batch_id)
    ids = [spec.file_id for spec in files]
    existing = {
        row.file_id: row
        for row in conn.execute(
            select(vector_store_files)
            .where(
                vector_store_files.c.vector_store_id == vector_store_id,
                vector_store_files.c.file_id.in_(ids),
            )
            .with_for_update()
        )
    }
    now = int(time.time())
    fresh: list[JSONDict] = []
    for spec in files:
        values = {
            "batch_id": batch_id,
            "created_at": now,
            "status": "in_progress",
            "last_error": None,
            "chunking_strategy": spec.chunking_strategy,
            "attributes": spec.attributes,
            "usage_bytes": 0,
            "workflow_started": False,
        }
        old = existing.get(spec.file_id)
        if old is None:
            fresh.append(
                {
                    **values,
                    "project_id": project_id,
                    "vector_store_id": vector_store_id,
                    "file_id": spec.file_id,
                    "generation": 1,
                }
            )
            plan.start.append(FileJob(spec.file_id, 1))
            continue
        # Re-attached: a new generation; the old one's chunks go now, its ingestion is cancelled.
        conn.execute(
            update(vector_store_files)
            .where(vector_store_files.c.seq == old.seq)
            .values(**values, generation=old.generation + 1)
        )
        delete_chunks(conn, vector_store_id, spec.file_id)
        if old.status == "in_progress":
            plan.cancel.append(FileJob(spec.file_id, old.generation))
        plan.start.append(FileJob(spec.file_id, old.generation + 1))
    if fresh:
        conn.execute(vector_store_files.insert(), fresh)
    return plan


def _detach_rows(
    conn: Connection,
    rows: Sequence[Row[Any]],
    plan: IngestionPlan,
    *,
    chunks: bool = True,
    batched: bool = True,
) -> None:
    """Delete the rows (then their chunks); plan to cancel their ingestions still in flight
    (`batched=False`: not those of a batch, whose own cancel reaches them)."""
    for row in rows:
        conn.execute(delete(vector_store_files).where(vector_store_files.c.seq == row.seq))
        if chunks:
            delete_chunks(conn, row.vector_store_id, row.file_id)
        if row.status == "in_progress" and (batched or row.batch_id is None):
            plan.cancel.append(FileJob(row.file_id, row.generation))


def detach_all(conn: Connection, project_id: str, vector_store_id: str) -> IngestionPlan:
    """Every file of a store (being deleted): rows, then chunks."""
    plan = IngestionPlan(project_id=project_id, vector_store_id=vector_store_id)
    rows = conn.execute(
        select(vector_store_files)
        .where(vector_store_files.c.vector_store_id == vector_store_id)
        .with_for_update()
    ).all()
    _detach_rows(conn, rows, plan, chunks=False, batched=False)
    delete_store_chunks(conn, vector_store_id)
    busy = {row.batch_id for row in rows if row.status == "in_progress" and row.batch_id}
    plan.cancel_batches = sorted(busy)
    return plan


def remove_file_from_vector_stores(conn: Connection, project_id: str, file_id: str) -> int:
    """The vector-store part of deleting a file (`DELETE /files/{id}`), in that transaction:
    its rows in every store of the project, their chunks (so it stops matching at once), and its
    parsed text. An ingestion still in flight finds its row gone at its next write and stops.
    Returns the number of stores the file was in."""
    rows = conn.execute(
        select(vector_store_files)
        .where(
            vector_store_files.c.project_id == project_id,
            vector_store_files.c.file_id == file_id,
        )
        .with_for_update()
    ).all()
    _detach_rows(conn, rows, IngestionPlan(project_id=project_id, vector_store_id=""))
    conn.execute(delete(parsed_files).where(parsed_files.c.file_id == file_id))
    return len(rows)


def _file_where(project_id: str, vector_store_id: str, file_id: str) -> ColumnElement[bool]:
    return (
        (vector_store_files.c.vector_store_id == vector_store_id)
        & (vector_store_files.c.file_id == file_id)
        & (vector_store_files.c.project_id == project_id)
    )


def _file_row(
    conn: Connection, project_id: str, vector_store_id: str, file_id: str, *, lock: bool = False
) -> Row[Any]:
    store_row(conn, project_id, vector_store_id)
    query = select(vector_store_files).where(_file_where(project_id, vector_store_id, file_id))
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(
            f"No file found with id '{file_id}' in vector store '{vector_store_id}'.",
            param="file_id",
        )
    return row


def _page(
    conn: Connection, scope: ColumnElement[bool], params: PageParams
) -> tuple[list[Row[Any]], bool]:
    """`fetch_page` for rows whose public id is the file id."""
    table = vector_store_files
    query = select(table).where(scope)
    for cursor, name in ((params.after, "after"), (params.before, "before")):
        if cursor is None:
            continue
        seq = conn.scalar(select(table.c.seq).where(scope, table.c.file_id == cursor))
        if seq is None:
            raise InvalidRequest(
                f"Invalid '{name}': no object with id '{cursor}' in this list.", param=name
            )
        forward = (name == "after") == (params.order == "desc")
        query = query.where(table.c.seq < seq if forward else table.c.seq > seq)
    backwards = params.before is not None and params.after is None
    descending = (params.order == "desc") != backwards
    ordering = table.c.seq.desc() if descending else table.c.seq.asc()
    rows = list(conn.execute(query.order_by(ordering).limit(params.limit + 1)).all())
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    return (list(reversed(rows)) if backwards else rows), has_more


def batch_counts(conn: Connection, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    stats = file_stats(conn, vector_store_files.c.batch_id, batch_ids)
    return {key: value[0] for key, value in stats.items()}


def _batch_row(
    conn: Connection, project_id: str, vector_store_id: str, batch_id: str, *, lock: bool = False
) -> Row[Any]:
    store_row(conn, project_id, vector_store_id)
    query = select(vector_store_file_batches).where(
        vector_store_file_batches.c.id == batch_id,
        vector_store_file_batches.c.vector_store_id == vector_store_id,
        vector_store_file_batches.c.project_id == project_id,
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound.object("vector store file batch", batch_id)
    return row


def _batch_object(conn: Connection, row: Row[Any]) -> JSONDict:
    return batch_object(row, batch_counts(conn, [row.id])[row.id])


class VectorStoreFileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- vector-store files --------------------------------------------------------------------

    async def attach(
        self, project_id: str, vector_store_id: str, spec: FileSpec
    ) -> tuple[JSONDict, IngestionPlan]:
        def tx(conn: Connection) -> tuple[JSONDict, IngestionPlan]:
            writable_store(conn, project_id, vector_store_id)
            require_files(conn, project_id, [spec.file_id], param="file_id")
            plan = attach_files(conn, project_id, vector_store_id, [spec], batch_id=None)
            row = _file_row(conn, project_id, vector_store_id, spec.file_id)
            return vector_store_file_object(row), plan

        return await self._db.write(tx)

    async def get_file(self, project_id: str, vector_store_id: str, file_id: str) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            return vector_store_file_object(_file_row(conn, project_id, vector_store_id, file_id))

        return await self._db.read(tx)

    async def list_files(
        self,
        project_id: str,
        vector_store_id: str,
        page: PageParams,
        *,
        status: str | None,
        batch_id: str | None = None,
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            scope = (vector_store_files.c.vector_store_id == vector_store_id) & (
                vector_store_files.c.project_id == project_id
            )
            if batch_id is not None:
                _batch_row(conn, project_id, vector_store_id, batch_id)
                scope = scope & (vector_store_files.c.batch_id == batch_id)
            else:
                store_row(conn, project_id, vector_store_id)
            if status is not None:
                scope = scope & (vector_store_files.c.status == status)
            rows, has_more = _page(conn, scope, page)
            return list_object([vector_store_file_object(r) for r in rows], has_more)

        return await self._db.read(tx)

    async def update_attributes(
        self, project_id: str, vector_store_id: str, file_id: str, attributes: JSONDict
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            row = _file_row(conn, project_id, vector_store_id, file_id, lock=True)
            conn.execute(
                update(vector_store_files)
                .where(vector_store_files.c.seq == row.seq)
                .values(attributes=attributes)
            )
            return vector_store_file_object(_file_row(conn, project_id, vector_store_id, file_id))

        return await self._db.write(tx)

    async def detach(
        self, project_id: str, vector_store_id: str, file_id: str
    ) -> tuple[JSONDict, IngestionPlan]:
        """Remove the file from the store (the file itself stays): row and chunks now."""

        def tx(conn: Connection) -> IngestionPlan:
            row = _file_row(conn, project_id, vector_store_id, file_id, lock=True)
            plan = IngestionPlan(project_id=project_id, vector_store_id=vector_store_id)
            _detach_rows(conn, [row], plan)
            return plan

        plan = await self._db.write(tx)
        deleted = {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}
        return deleted, plan

    async def content(self, project_id: str, vector_store_id: str, file_id: str) -> JSONDict:
        """The parsed text, a page per item for paged documents (one item otherwise)."""

        def tx(conn: Connection) -> JSONDict:
            _file_row(conn, project_id, vector_store_id, file_id)
            parsed = conn.execute(
                select(parsed_files.c.text, parsed_files.c.page_starts)
                .where(parsed_files.c.file_id == file_id, parsed_files.c.project_id == project_id)
                .order_by(parsed_files.c.created_at.desc())
            ).first()
            data: list[JSONDict] = []
            if parsed is not None:
                text, starts = parsed.text, list(parsed.page_starts or [])
                bounds = [*starts, len(text)] if starts else [0, len(text)]
                data = [
                    {"type": "text", "text": text[start:end]}
                    for start, end in itertools.pairwise(bounds)
                ]
            return {
                "object": "vector_store.file_content.page",
                "data": data,
                "has_more": False,
                "next_page": None,
            }

        return await self._db.read(tx)

    # --- batches -------------------------------------------------------------------------------

    async def create_batch(
        self, project_id: str, vector_store_id: str, files: Sequence[FileSpec], *, param: str
    ) -> tuple[JSONDict, IngestionPlan]:
        def tx(conn: Connection) -> tuple[JSONDict, IngestionPlan]:
            writable_store(conn, project_id, vector_store_id)
            require_files(conn, project_id, [spec.file_id for spec in files], param=param)
            batch_id = new_id("vsfb")
            conn.execute(
                vector_store_file_batches.insert().values(
                    id=batch_id,
                    project_id=project_id,
                    vector_store_id=vector_store_id,
                    created_at=int(time.time()),
                    status="in_progress",
                    workflow_started=False,
                )
            )
            plan = attach_files(conn, project_id, vector_store_id, files, batch_id=batch_id)
            row = _batch_row(conn, project_id, vector_store_id, batch_id)
            return _batch_object(conn, row), plan

        return await self._db.write(tx)

    async def get_batch(self, project_id: str, vector_store_id: str, batch_id: str) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            return _batch_object(conn, _batch_row(conn, project_id, vector_store_id, batch_id))

        return await self._db.read(tx)

    async def cancel_batch(
        self, project_id: str, vector_store_id: str, batch_id: str
    ) -> tuple[JSONDict, IngestionPlan]:
        """One transaction: the batch's `in_progress` files become `cancelled` (their chunks
        go), the batch `cancelled`. Then the launcher cancels the workflow; an ingestion that
        tries to commit after this finds its row no longer `in_progress` and loses."""

        def tx(conn: Connection) -> tuple[JSONDict, IngestionPlan]:
            row = _batch_row(conn, project_id, vector_store_id, batch_id, lock=True)
            plan = IngestionPlan(project_id=project_id, vector_store_id=vector_store_id)
            counts = batch_counts(conn, [batch_id])[batch_id]
            if row.status != "in_progress" or not counts["in_progress"]:
                status = row.status if row.status != "in_progress" else "completed"
                raise InvalidRequest(
                    f"Cannot cancel a vector store file batch with status '{status}'.",
                    code="invalid_state",
                )
            pending = conn.execute(
                select(vector_store_files)
                .where(
                    vector_store_files.c.batch_id == batch_id,
                    vector_store_files.c.status == "in_progress",
                )
                .with_for_update()
            ).all()
            for file_row in pending:
                conn.execute(
                    update(vector_store_files)
                    .where(vector_store_files.c.seq == file_row.seq)
                    .values(status="cancelled")
                )
                delete_chunks(conn, vector_store_id, file_row.file_id)
            conn.execute(
                update(vector_store_file_batches)
                .where(vector_store_file_batches.c.seq == row.seq)
                .values(status="cancelled")
            )
            plan.cancel_batches.append(batch_id)
            fresh = _batch_row(conn, project_id, vector_store_id, batch_id)
            return _batch_object(conn, fresh), plan

        return await self._db.write(tx)

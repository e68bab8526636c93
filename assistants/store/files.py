"""Uploaded files' metadata (the `files` table), scoped to a project.

The bytes are in blob storage (`assistants.files`); this module keeps the rows, answers "do these
file ids exist in this project" for other transactions, and deletes a file together with every
reference the Assistants API keeps to it (`tool_resources.code_interpreter.file_ids` of assistants
and threads; the vector-store cascade joins the same transaction). A file past its `expires_at` is
treated as deleted everywhere: the sweeper then removes its row and blob.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, delete, or_, select
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest, NotFound
from assistants.store.db import Database
from assistants.store.pagination import list_object
from assistants.store.tables import files
from assistants.store.tool_resources import drop_references

JSONDict = dict[str, Any]
_ALPHABET = string.ascii_letters + string.digits


def new_file_id() -> str:
    """`file-` and 24 letters and digits, as OpenAI's file ids look."""
    return "file-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class FileRecord:
    id: str
    project_id: str
    filename: str
    bytes: int
    purpose: str
    content_type: str
    storage_key: str
    sha256: str = ""
    created_at: int = 0


def file_object(row: Row[Any]) -> JSONDict:
    """The OpenAI file object. `expires_at` appears only when set (the spec's field is a
    non-nullable integer)."""
    obj: JSONDict = {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": row.created_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": row.status,
    }
    if row.expires_at is not None:
        obj["expires_at"] = row.expires_at
    return obj


def _record(row: Row[Any]) -> FileRecord:
    return FileRecord(
        id=row.id,
        project_id=row.project_id,
        filename=row.filename,
        bytes=row.bytes,
        purpose=row.purpose,
        content_type=row.content_type,
        storage_key=row.storage_key,
        sha256=row.sha256,
        created_at=row.created_at,
    )


def not_found(file_id: str, *, param: str | None = "id") -> NotFound:
    return NotFound(f"No such File object: {file_id}", param=param)


def _live(project_id: str) -> ColumnElement[bool]:
    """This project's files that have not expired."""
    now = int(time.time())
    return (files.c.project_id == project_id) & or_(
        files.c.expires_at.is_(None), files.c.expires_at > now
    )


def _row(conn: Connection, project_id: str, file_id: str) -> Row[Any] | None:
    return conn.execute(select(files).where(_live(project_id), files.c.id == file_id)).first()


def missing_file_ids(conn: Connection, project_id: str, file_ids: Sequence[str]) -> list[str]:
    """The ids (in the order given, without repeats) that name no live file of the project:
    for other transactions that must refuse unknown file ids and write nothing."""
    wanted = list(dict.fromkeys(file_ids))
    if not wanted:
        return []
    found = set(
        conn.scalars(select(files.c.id).where(_live(project_id), files.c.id.in_(wanted))).all()
    )
    return [file_id for file_id in wanted if file_id not in found]


def delete_file_tx(conn: Connection, project_id: str, file_id: str) -> FileRecord:
    """Delete the file's row and every reference to it, in the caller's transaction; returns
    the deleted record (its blob is the caller's to remove once this commits)."""
    row = conn.execute(
        select(files).where(files.c.project_id == project_id, files.c.id == file_id)
    ).first()
    if row is None:
        raise not_found(file_id)
    conn.execute(delete(files).where(files.c.seq == row.seq))
    drop_references(conn, project_id, "code_interpreter", "file_ids", file_id)
    # Out of every vector store, chunks included, so it stops matching at once. (Imported here:
    # vector-store files check file ids with this module, which would make a cycle at the top.)
    from assistants.store.vector_store_files import remove_file_from_vector_stores

    remove_file_from_vector_stores(conn, project_id, file_id)
    return _record(row)


class FileStore:
    missing_file_ids = staticmethod(missing_file_ids)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        project_id: str,
        *,
        file_id: str,
        filename: str,
        purpose: str,
        size: int,
        content_type: str,
        sha256: str,
        storage_key: str,
        expires_after_s: int | None = None,
    ) -> JSONDict:
        """Record an uploaded file whose bytes are already stored under `storage_key`."""
        now = int(time.time())

        def tx(conn: Connection) -> JSONDict:
            conn.execute(
                files.insert().values(
                    id=file_id,
                    project_id=project_id,
                    created_at=now,
                    filename=filename,
                    purpose=purpose,
                    bytes=size,
                    content_type=content_type,
                    sha256=sha256,
                    storage_key=storage_key,
                    expires_at=now + expires_after_s if expires_after_s is not None else None,
                    status="processed",
                )
            )
            return file_object(conn.execute(select(files).where(files.c.id == file_id)).one())

        return await self._db.write(tx)

    async def get(self, project_id: str, file_id: str, *, param: str | None = None) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            row = _row(conn, project_id, file_id)
            if row is None:
                raise not_found(file_id, param=param or "id")
            return file_object(row)

        return await self._db.read(tx)

    async def record(self, project_id: str, file_id: str) -> FileRecord:
        def tx(conn: Connection) -> FileRecord:
            row = _row(conn, project_id, file_id)
            if row is None:
                raise not_found(file_id)
            return _record(row)

        return await self._db.read(tx)

    async def records(self, project_id: str, file_ids: Sequence[str]) -> dict[str, FileRecord]:
        """The live files among `file_ids`, by id (absent ids are simply not in the answer)."""
        wanted = list(dict.fromkeys(file_ids))

        def tx(conn: Connection) -> dict[str, FileRecord]:
            if not wanted:
                return {}
            rows = conn.execute(select(files).where(_live(project_id), files.c.id.in_(wanted)))
            return {row.id: _record(row) for row in rows}

        return await self._db.read(tx)

    async def delete(self, project_id: str, file_id: str) -> JSONDict:
        await self.remove(project_id, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    async def remove(self, project_id: str, file_id: str) -> FileRecord:
        """`delete`, returning the record so the caller can remove the blob after the commit."""
        return await self._db.write(lambda conn: delete_file_tx(conn, project_id, file_id))

    async def list_files(
        self,
        project_id: str,
        *,
        purpose: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        after: str | None,
    ) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            query = select(files).where(_live(project_id))
            if purpose is not None:
                query = query.where(files.c.purpose == purpose)
            if after is not None:
                # The cursor is any file of the project (not only of this purpose).
                seq = conn.scalar(
                    select(files.c.seq).where(files.c.project_id == project_id, files.c.id == after)
                )
                if seq is None:
                    raise InvalidRequest(
                        f"Invalid 'after': no file with id '{after}' in this list.", param="after"
                    )
                query = query.where(files.c.seq < seq if order == "desc" else files.c.seq > seq)
            ordering = files.c.seq.desc() if order == "desc" else files.c.seq.asc()
            rows = conn.execute(query.order_by(ordering).limit(limit + 1)).all()
            data = [file_object(row) for row in rows[:limit]]
            return list_object(data, len(rows) > limit)

        return await self._db.read(tx)

    async def expired(self, now: int, limit: int = 100) -> list[tuple[str, str]]:
        """(project id, file id) of files past their `expires_at`, oldest first."""

        def tx(conn: Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                select(files.c.project_id, files.c.id)
                .where(files.c.expires_at.is_not(None), files.c.expires_at <= now)
                .order_by(files.c.expires_at)
                .limit(limit)
            ).all()
            return [(row.project_id, row.id) for row in rows]

        return await self._db.read(tx)

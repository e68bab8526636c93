"""The ingestion activities' side of vector-store files: what to ingest, the parse cache, guarded
chunk writes, the commit, the cleanup, and what the API's sweeper restarts.

Every write here is conditional on the file's row still being `in_progress` at the generation
the ingestion works on, checked under the row's lock in the same transaction. So whatever
happened meanwhile (a batch cancel, a detach, a file or store deletion, a newer attachment), the
in-flight ingestion cannot add a chunk or a status after it: its commit "loses" and it stops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from assistants.store.chunks import delete_file as delete_chunks
from assistants.store.chunks import insert_chunks
from assistants.store.db import Database
from assistants.store.tables import (
    files,
    parsed_files,
    vector_store_file_batches,
    vector_store_files,
    vector_stores,
)
from assistants.store.vector_store_files import FileJob

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class IngestTarget:
    """Everything an ingestion step needs to know about its file, read fresh each time."""

    project_id: str
    vector_store_id: str
    file_id: str
    generation: int
    max_tokens: int
    overlap_tokens: int
    embedding_model: str
    embedding_dims: int
    filename: str
    content_type: str | None
    storage_key: str


@dataclass(frozen=True)
class ParsedText:
    text: str
    page_starts: list[int]


@dataclass(frozen=True)
class PendingBatch:
    project_id: str
    vector_store_id: str
    batch_id: str
    jobs: list[FileJob]


@dataclass(frozen=True)
class PendingFile:
    project_id: str
    vector_store_id: str
    job: FileJob


def _active_row(
    conn: Connection, vector_store_id: str, file_id: str, generation: int
) -> Row[Any] | None:
    """The file's row, locked, if it is still `in_progress` at this generation."""
    row = conn.execute(
        select(vector_store_files)
        .where(
            vector_store_files.c.vector_store_id == vector_store_id,
            vector_store_files.c.file_id == file_id,
        )
        .with_for_update()
    ).first()
    if row is None or row.generation != generation or row.status != "in_progress":
        return None
    return row


def _insert_ignore(conn: Connection, values: JSONDict) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(parsed_files).values(**values).on_conflict_do_nothing())


class IngestionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def target(
        self, vector_store_id: str, file_id: str, generation: int
    ) -> IngestTarget | None:
        """None when there is nothing (more) to do: the row moved on, or the file is gone."""

        def tx(conn: Connection) -> IngestTarget | None:
            row = conn.execute(
                select(
                    vector_store_files,
                    vector_stores.c.embedding_model,
                    vector_stores.c.embedding_dims,
                    files.c.filename,
                    files.c.content_type,
                    files.c.storage_key,
                )
                .join(vector_stores, vector_stores.c.id == vector_store_files.c.vector_store_id)
                .join(files, files.c.id == vector_store_files.c.file_id)
                .where(
                    vector_store_files.c.vector_store_id == vector_store_id,
                    vector_store_files.c.file_id == file_id,
                    vector_store_files.c.generation == generation,
                    vector_store_files.c.status == "in_progress",
                )
            ).first()
            if row is None:
                return None
            static = row.chunking_strategy["static"]
            return IngestTarget(
                project_id=row.project_id,
                vector_store_id=vector_store_id,
                file_id=file_id,
                generation=generation,
                max_tokens=int(static["max_chunk_size_tokens"]),
                overlap_tokens=int(static["chunk_overlap_tokens"]),
                embedding_model=row.embedding_model,
                embedding_dims=row.embedding_dims,
                filename=row.filename,
                content_type=row.content_type,
                storage_key=row.storage_key,
            )

        return await self._db.read(tx)

    # --- the parse cache -----------------------------------------------------------------------

    async def parsed(self, file_id: str, parser_version: str) -> ParsedText | None:
        def tx(conn: Connection) -> ParsedText | None:
            row = conn.execute(
                select(parsed_files.c.text, parsed_files.c.page_starts).where(
                    parsed_files.c.file_id == file_id,
                    parsed_files.c.parser_version == parser_version,
                )
            ).first()
            return None if row is None else ParsedText(row.text, list(row.page_starts))

        return await self._db.read(tx)

    async def save_parsed(
        self, project_id: str, file_id: str, parser_version: str, parsed: ParsedText
    ) -> bool:
        """Keep the parsed text (idempotent). False if the file was deleted meanwhile: then
        nothing is kept (its deletion already removed what there was)."""

        def tx(conn: Connection) -> bool:
            alive = conn.scalar(select(files.c.seq).where(files.c.id == file_id).with_for_update())
            if alive is None:
                return False
            _insert_ignore(
                conn,
                {
                    "file_id": file_id,
                    "parser_version": parser_version,
                    "project_id": project_id,
                    "text": parsed.text,
                    "page_starts": parsed.page_starts,
                    "created_at": int(time.time()),
                },
            )
            return True

        return await self._db.write(tx)

    # --- chunks and the commit -----------------------------------------------------------------

    async def insert_chunks(
        self, vector_store_id: str, file_id: str, generation: int, rows: list[JSONDict]
    ) -> bool:
        """Upsert chunks (by their deterministic ids) while the file is still being ingested at
        this generation; False (and nothing written) once it is not."""

        def tx(conn: Connection) -> bool:
            if _active_row(conn, vector_store_id, file_id, generation) is None:
                return False
            if rows:
                insert_chunks(conn, rows)
            return True

        return await self._db.write(tx)

    async def record_dimensions(self, vector_store_id: str, dims: int) -> None:
        """A store whose embedding endpoint did not say its vector size learns it from the first
        vectors."""
        await self._db.write(
            lambda conn: conn.execute(
                update(vector_stores)
                .where(vector_stores.c.id == vector_store_id, vector_stores.c.embedding_dims == 0)
                .values(embedding_dims=dims)
            )
        )

    async def commit(
        self, vector_store_id: str, file_id: str, generation: int, usage_bytes: int
    ) -> bool:
        """`in_progress → completed` with the usage, in one conditional update: the moment the
        file's chunks become searchable. False if a cancel (or a delete, or a newer attachment)
        got there first; then this generation's chunks are removed."""

        def tx(conn: Connection) -> bool:
            result = conn.execute(
                update(vector_store_files)
                .where(
                    vector_store_files.c.vector_store_id == vector_store_id,
                    vector_store_files.c.file_id == file_id,
                    vector_store_files.c.generation == generation,
                    vector_store_files.c.status == "in_progress",
                )
                .values(status="completed", usage_bytes=usage_bytes, last_error=None)
            )
            if result.rowcount == 1:
                return True
            _drop_leftovers(conn, vector_store_id, file_id, generation)
            return False

        return await self._db.write(tx)

    async def cleanup(
        self, vector_store_id: str, file_id: str, generation: int, error: JSONDict | None
    ) -> str | None:
        """After a failure (`error` set: the file becomes `failed` with it) or a cancel: remove
        this generation's chunks. A row that moved on (cancelled by the API, detached, attached
        anew) keeps what it has. Returns the row's final status (None: no row)."""

        def tx(conn: Connection) -> str | None:
            row = _active_row(conn, vector_store_id, file_id, generation)
            if row is not None:
                status = "failed" if error is not None else "cancelled"
                conn.execute(
                    update(vector_store_files)
                    .where(vector_store_files.c.seq == row.seq)
                    .values(status=status, last_error=error, usage_bytes=0)
                )
            _drop_leftovers(conn, vector_store_id, file_id, generation)
            final = conn.scalar(
                select(vector_store_files.c.status).where(
                    vector_store_files.c.vector_store_id == vector_store_id,
                    vector_store_files.c.file_id == file_id,
                )
            )
            return None if final is None else str(final)

        return await self._db.write(tx)

    # --- the sweeper ---------------------------------------------------------------------------

    async def unstarted(
        self, older_than_s: float, limit: int = 100
    ) -> tuple[list[PendingBatch], list[PendingFile]]:
        """Batches and lone files still `in_progress` whose workflow start was never confirmed
        (the API died, or Temporal was unreachable, between the commit and the start)."""
        cutoff = int(time.time() - older_than_s)

        def tx(conn: Connection) -> tuple[list[PendingBatch], list[PendingFile]]:
            batch_rows = conn.execute(
                select(vector_store_file_batches)
                .where(
                    vector_store_file_batches.c.workflow_started.is_(False),
                    vector_store_file_batches.c.status == "in_progress",
                    vector_store_file_batches.c.created_at <= cutoff,
                )
                .limit(limit)
            ).all()
            batches = [
                PendingBatch(row.project_id, row.vector_store_id, row.id, _batch_jobs(conn, row.id))
                for row in batch_rows
            ]
            file_rows = conn.execute(
                select(vector_store_files)
                .where(
                    vector_store_files.c.workflow_started.is_(False),
                    vector_store_files.c.status == "in_progress",
                    vector_store_files.c.batch_id.is_(None),
                    vector_store_files.c.created_at <= cutoff,
                )
                .limit(limit)
            ).all()
            lone = [
                PendingFile(
                    row.project_id, row.vector_store_id, FileJob(row.file_id, row.generation)
                )
                for row in file_rows
            ]
            return batches, lone

        return await self._db.read(tx)

    async def mark_batch_started(self, batch_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                update(vector_store_file_batches)
                .where(vector_store_file_batches.c.id == batch_id)
                .values(workflow_started=True)
            )
        )

    async def mark_file_started(self, vector_store_id: str, job: FileJob) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                update(vector_store_files)
                .where(
                    vector_store_files.c.vector_store_id == vector_store_id,
                    vector_store_files.c.file_id == job.file_id,
                    vector_store_files.c.generation == job.generation,
                )
                .values(workflow_started=True)
            )
        )


def _batch_jobs(conn: Connection, batch_id: str) -> list[FileJob]:
    rows = conn.execute(
        select(vector_store_files.c.file_id, vector_store_files.c.generation)
        .where(
            vector_store_files.c.batch_id == batch_id,
            vector_store_files.c.status == "in_progress",
        )
        .order_by(vector_store_files.c.seq)
    ).all()
    return [FileJob(row.file_id, row.generation) for row in rows]


def _drop_leftovers(conn: Connection, vector_store_id: str, file_id: str, generation: int) -> None:
    """Remove the chunks this generation wrote, unless it committed them."""
    committed = conn.scalar(
        select(vector_store_files.c.seq).where(
            vector_store_files.c.vector_store_id == vector_store_id,
            vector_store_files.c.file_id == file_id,
            vector_store_files.c.generation == generation,
            vector_store_files.c.status == "completed",
        )
    )
    if committed is None:
        delete_chunks(conn, vector_store_id, file_id, generation)

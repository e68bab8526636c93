"""Schema migrations, applied at start-up (`api`, `worker`, `dev`) or by
`durable-assistants migrate`.

A fresh database is created from `tables.py` and stamped with the newest version; an existing one
runs, in order, every migration newer than its stamp. To change the schema: edit `tables.py` *and*
append a migration that brings an existing database to the same shape. Concurrent starters (API and
worker booting together) are safe: the version check and the DDL run in one write transaction, and
PostgreSQL additionally takes an advisory lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from assistants.store import tables
from assistants.store.db import Database
from assistants.store.tables import (
    files,
    metadata,
    tool_output_submissions,
    vector_store_chunk_stats,
    vector_store_chunks,
    webhooks,
)

log = structlog.get_logger(__name__)

_version_metadata = MetaData()
schema_version = Table(
    "schema_version",
    _version_metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)

Migration = tuple[int, str, Callable[[Connection], None]]


def _add_event_created_ms(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE run_events ADD COLUMN created_ms BIGINT"))


def _durable_intents(conn: Connection) -> None:
    """The cancel outbox on runs, and submissions that outlive a failed request. (Migration 2
    creates `tool_output_submissions` from today's `tables.py`, so its columns may exist.)"""
    for table, column, kind in (
        ("runs", "cancel_requested_at", "BIGINT"),
        ("runs", "cancel_delivered_at", "BIGINT"),
        ("tool_output_submissions", "step_id", "VARCHAR(64)"),
        ("tool_output_submissions", "applied_at", "BIGINT"),
    ):
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _vector_stores(conn: Connection) -> None:
    for table in (
        tables.vector_stores,
        tables.vector_store_files,
        tables.vector_store_file_batches,
        tables.parsed_files,
    ):
        table.create(conn, checkfirst=True)


def _vector_store_chunks(conn: Connection) -> None:
    """The chunk table and its search indexes (FTS5 / tsvector + GIN / pgvector): the same
    `after_create` DDL as a fresh database's `create_all` (see store/search_schema.py)."""
    vector_store_chunks.create(conn, checkfirst=True)
    vector_store_chunk_stats.create(conn, checkfirst=True)


# Append new migrations here; never edit or reorder applied ones.
MIGRATIONS: list[Migration] = [
    (1, "initial schema", lambda conn: metadata.create_all(conn)),
    (2, "tool output submissions", lambda conn: tool_output_submissions.create(conn)),
    (3, "webhooks", lambda conn: webhooks.create(conn)),
    (4, "event append time in ms", _add_event_created_ms),
    (5, "durable cancels and tool output retries", _durable_intents),
    (6, "files", lambda conn: files.create(conn, checkfirst=True)),
    (7, "vector stores, their files and file batches", _vector_stores),
    (8, "vector store chunks and search indexes", _vector_store_chunks),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int | None:
    """The database's schema version; None before any migration ran (no table, or no row)."""
    if not inspect(conn).has_table(schema_version.name):
        return None
    version: int | None = conn.execute(select(func.max(schema_version.c.version))).scalar()
    return version


def _apply(conn: Connection) -> list[int]:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    current = current_version(conn)
    _version_metadata.create_all(conn)
    applied: list[int] = []
    now = int(time.time())
    if current is None:
        metadata.create_all(conn)
        conn.execute(
            schema_version.insert(), [{"version": LATEST, "name": "created", "applied_at": now}]
        )
        return [LATEST]
    for version, name, fn in MIGRATIONS:
        if version > current:
            fn(conn)
            conn.execute(
                schema_version.insert(), [{"version": version, "name": name, "applied_at": now}]
            )
            applied.append(version)
    return applied


async def migrate(db: Database) -> list[int]:
    """Bring the schema up to date; returns the versions applied (empty when current)."""
    applied = await db.write(_apply)
    if applied:
        log.info("schema migrated", versions=applied)
    return applied

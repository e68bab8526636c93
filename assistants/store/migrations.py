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
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection

from assistants.store.db import Database
from assistants.store.tables import metadata, tool_output_submissions, webhooks

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


# Append new migrations here; never edit or reorder applied ones.
MIGRATIONS: list[Migration] = [
    (1, "initial schema", lambda conn: metadata.create_all(conn)),
    (2, "tool output submissions", lambda conn: tool_output_submissions.create(conn)),
    (3, "webhooks", lambda conn: webhooks.create(conn)),
    (4, "event append time in ms", _add_event_created_ms),
]
LATEST = MIGRATIONS[-1][0]


def _apply(conn: Connection) -> list[int]:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    fresh = not inspect(conn).has_table("schema_version")
    _version_metadata.create_all(conn)
    current = conn.execute(
        select(schema_version.c.version).order_by(schema_version.c.version.desc())
    )
    row = current.first()
    applied: list[int] = []
    now = int(time.time())
    if fresh or row is None:
        metadata.create_all(conn)
        conn.execute(
            schema_version.insert(), [{"version": LATEST, "name": "created", "applied_at": now}]
        )
        return [LATEST]
    for version, name, fn in MIGRATIONS:
        if version > row.version:
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

"""Taking a deleted object out of every `tool_resources` that names it.

Assistants and threads refer to files (`code_interpreter.file_ids`) and vector stores
(`file_search.vector_store_ids`) by id. When a file or a store is deleted, those references go in
the same transaction, as on OpenAI, so no later run or read finds a dangling id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, Text, cast, select, update
from sqlalchemy.engine import Connection

from assistants.store.tables import assistants, threads


def _without(tool_resources: Any, tool: str, key: str, object_id: str) -> Any:
    """`tool_resources` with `object_id` taken out of `tool.key` (the same object when absent)."""
    if not isinstance(tool_resources, dict):
        return tool_resources
    section = tool_resources.get(tool)
    if not isinstance(section, dict) or object_id not in (section.get(key) or []):
        return tool_resources
    kept = [i for i in section[key] if i != object_id]
    return {**tool_resources, tool: {**section, key: kept}}


def _drop_in(conn: Connection, table: Table, project_id: str, tool: str, key: str, oid: str) -> int:
    # Candidates by a text match (ids are letters, digits, `_` and `-`, and `_` only widens the
    # match), then the exact edit on the JSON in Python: the same on SQLite and PostgreSQL.
    candidates = conn.execute(
        select(table.c.id, table.c.tool_resources).where(
            table.c.project_id == project_id,
            cast(table.c.tool_resources, Text).like(f'%"{oid}"%'),
        )
    ).all()
    changed = 0
    for row_id, resources in candidates:
        updated = _without(resources, tool, key, oid)
        if updated is not resources:
            conn.execute(update(table).where(table.c.id == row_id).values(tool_resources=updated))
            changed += 1
    return changed


def drop_references(conn: Connection, project_id: str, tool: str, key: str, object_id: str) -> int:
    """Remove `object_id` from `tool_resources[tool][key]` of the project's assistants and
    threads, in the caller's transaction; returns how many objects changed."""
    return sum(
        _drop_in(conn, table, project_id, tool, key, object_id) for table in (assistants, threads)
    )

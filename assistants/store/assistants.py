"""Assistants: create, read, modify, delete, list, scoped to a project."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from assistants.errors import NotFound
from assistants.ids import new_id
from assistants.store import objects
from assistants.store.db import Database
from assistants.store.pagination import PageParams, fetch_page, list_object
from assistants.store.prepared import select_where
from assistants.store.tables import assistants
from assistants.store.threads import PrepareResources

JSONDict = dict[str, Any]


def get_assistant(
    conn: Connection, project_id: str, assistant_id: str, *, param: str | None = None
) -> JSONDict:
    """The project's assistant (a 404 naming `param` when it is not there)."""
    row = select_where(conn, assistants, {"id": assistant_id, "project_id": project_id})
    if row is None:
        raise NotFound.object("assistant", assistant_id, param=param)
    return objects.assistant(row)


class AssistantStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, project_id: str, fields: JSONDict, prepare: PrepareResources | None = None
    ) -> JSONDict:
        """`prepare` turns `tool_resources` into what is stored, in the same transaction."""
        assistant_id = new_id("asst")

        def tx(conn: Connection) -> JSONDict:
            values = dict(fields)
            if prepare is not None:
                values["tool_resources"] = prepare(conn, values.get("tool_resources"))
            conn.execute(
                assistants.insert().values(
                    id=assistant_id, project_id=project_id, created_at=int(time.time()), **values
                )
            )
            row = conn.execute(select(assistants).where(assistants.c.id == assistant_id)).one()
            return objects.assistant(row)

        return await self._db.write(tx)

    async def get(
        self, project_id: str, assistant_id: str, *, param: str | None = None
    ) -> JSONDict:
        return await self._db.lookup(
            lambda conn: get_assistant(conn, project_id, assistant_id, param=param)
        )

    async def modify(self, project_id: str, assistant_id: str, fields: JSONDict) -> JSONDict:
        where = (assistants.c.id == assistant_id) & (assistants.c.project_id == project_id)

        def tx(conn: Connection) -> JSONDict:
            if fields:
                conn.execute(update(assistants).where(where).values(**fields))
            row = conn.execute(select(assistants).where(where)).first()
            if row is None:
                raise NotFound.object("assistant", assistant_id)
            return objects.assistant(row)

        return await self._db.write(tx)

    async def delete(self, project_id: str, assistant_id: str) -> JSONDict:
        def tx(conn: Connection) -> None:
            result = conn.execute(
                delete(assistants).where(
                    assistants.c.id == assistant_id, assistants.c.project_id == project_id
                )
            )
            if result.rowcount == 0:
                raise NotFound.object("assistant", assistant_id)

        await self._db.write(tx)
        return objects.deleted("assistant", assistant_id)

    async def list_assistants(self, project_id: str, page: PageParams) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            result = fetch_page(conn, assistants, assistants.c.project_id == project_id, page)
            return list_object([objects.assistant(r) for r in result.rows], result.has_more)

        return await self._db.lookup(tx)

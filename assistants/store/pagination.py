"""Cursor pagination shared by every list endpoint.

The SDK always sends `after=<last id of the page>` whatever the order, so `after`/`before` are read
relative to the requested order. Cursors are object ids, resolved to the internal `seq`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Table, select
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class PageParams:
    limit: int = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    has_more: bool


def _cursor_seq(
    conn: Connection, table: Table, scope: ColumnElement[bool], object_id: str, param: str
) -> int:
    seq = conn.scalar(select(table.c.seq).where(scope, table.c.id == object_id))
    if seq is None:
        raise InvalidRequest(
            f"Invalid '{param}': no object with id '{object_id}' in this list.", param=param
        )
    return int(seq)


def fetch_page(
    conn: Connection, table: Table, scope: ColumnElement[bool], params: PageParams
) -> Page:
    query = select(table).where(scope)
    if params.after is not None:
        seq = _cursor_seq(conn, table, scope, params.after, "after")
        query = query.where(table.c.seq < seq if params.order == "desc" else table.c.seq > seq)
    if params.before is not None:
        seq = _cursor_seq(conn, table, scope, params.before, "before")
        query = query.where(table.c.seq > seq if params.order == "desc" else table.c.seq < seq)
    if params.before is not None and params.after is None:
        # Page backwards from `before`: read in the opposite order, then flip.
        reverse = table.c.seq.asc() if params.order == "desc" else table.c.seq.desc()
        rows = list((conn.execute(query.order_by(reverse).limit(params.limit + 1))).all())
        has_more = len(rows) > params.limit
        return Page(rows=list(reversed(rows[: params.limit])), has_more=has_more)
    ordering = table.c.seq.desc() if params.order == "desc" else table.c.seq.asc()
    rows = list((conn.execute(query.order_by(ordering).limit(params.limit + 1))).all())
    return Page(rows=rows[: params.limit], has_more=len(rows) > params.limit)


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }

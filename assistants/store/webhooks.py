"""Completion webhooks: the endpoints a project registers, scoped to the project.

The signing secret is generated here and returned only by `create`; every other object form leaves
it out. The worker reads it back (`get`) to sign each delivery.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import Row, bindparam, delete, select
from sqlalchemy.engine import Connection

from assistants.errors import NotFound
from assistants.ids import new_id
from assistants.store.db import Database
from assistants.store.pagination import list_object
from assistants.store.prepared import Prepared
from assistants.store.tables import webhooks

JSONDict = dict[str, Any]
Ids = list[str]  # (`WebhookStore.list` shadows the builtin in its annotations)


def generate_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_object(row: Row[Any]) -> JSONDict:
    """The public form, without the secret."""
    return {
        "id": row.id,
        "object": "webhook",
        "created_at": row.created_at,
        "url": row.url,
        "events": list(row.events or []),
    }


def subscribed(events: list[str] | None, event: str) -> bool:
    """An empty subscription list means every event."""
    return not events or event in events


_PROJECT_HOOKS = Prepared(
    select(webhooks.c.id, webhooks.c.events)
    .where(webhooks.c.project_id == bindparam("project_id"))
    .order_by(webhooks.c.seq.asc())
)


def webhook_targets(conn: Connection, project_id: str, event: str) -> Ids:
    """Ids of the project's webhooks subscribed to `event`, oldest first."""
    rows = _PROJECT_HOOKS.all(conn, {"project_id": project_id})
    return [str(r.id) for r in rows if subscribed(r.events, event)]


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, project_id: str, url: str, events: list[str]) -> JSONDict:
        """The new webhook, with its signing secret (shown this once)."""
        webhook_id = new_id("wh")
        secret = generate_secret()

        def tx(conn: Connection) -> JSONDict:
            conn.execute(
                webhooks.insert().values(
                    id=webhook_id,
                    project_id=project_id,
                    url=url,
                    secret=secret,
                    events=list(events),
                    created_at=int(time.time()),
                )
            )
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
            return {**webhook_object(row), "secret": row.secret}

        return await self._db.write(tx)

    async def list(self, project_id: str) -> JSONDict:
        def tx(conn: Connection) -> JSONDict:
            rows = conn.execute(
                select(webhooks)
                .where(webhooks.c.project_id == project_id)
                .order_by(webhooks.c.seq.desc())
            ).all()
            return list_object([webhook_object(r) for r in rows], has_more=False)

        return await self._db.read(tx)

    async def delete(self, project_id: str, webhook_id: str) -> JSONDict:
        def tx(conn: Connection) -> None:
            result = conn.execute(
                delete(webhooks).where(
                    webhooks.c.id == webhook_id, webhooks.c.project_id == project_id
                )
            )
            if result.rowcount == 0:
                raise NotFound.object("webhook", webhook_id)

        await self._db.write(tx)
        return {"id": webhook_id, "object": "webhook.deleted", "deleted": True}

    # --- worker side -------------------------------------------------------------------------

    async def targets(self, project_id: str, event: str) -> Ids:
        """Ids of the project's webhooks subscribed to `event`, oldest first."""

        return await self._db.lookup(lambda conn: webhook_targets(conn, project_id, event))

    async def get(self, webhook_id: str) -> Row[Any] | None:
        """The full row (secret included) for a delivery; None once the webhook is deleted."""
        return await self._db.read(
            lambda conn: conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
        )

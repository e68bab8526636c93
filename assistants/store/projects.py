"""Projects and their API keys.

Keys are shown once and stored only as SHA-256 hashes (they are high-entropy random tokens, so a
fast hash is the right tool); each belongs to exactly one project.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.engine import Connection

from assistants.ids import new_id
from assistants.store.db import Database
from assistants.store.tables import api_keys, projects

DEFAULT_PROJECT = "default"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return "sk-da-" + secrets.token_urlsafe(32)


def _ensure_project(conn: Connection, name: str) -> str:
    existing = conn.scalar(select(projects.c.id).where(projects.c.name == name))
    if existing is not None:
        return str(existing)
    project_id = "proj_" + name if name == DEFAULT_PROJECT else new_id("proj")
    conn.execute(projects.insert().values(id=project_id, name=name, created_at=int(time.time())))
    return project_id


class ProjectStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure_project(self, name: str) -> str:
        return await self._db.write(lambda conn: _ensure_project(conn, name))

    async def add_key(self, project_name: str, key: str | None = None) -> str:
        """Register `key` (or a new random one) for the project; returns the key. Idempotent."""
        key = key or generate_key()
        digest = hash_key(key)

        def tx(conn: Connection) -> None:
            project_id = _ensure_project(conn, project_name)
            owner = conn.scalar(select(api_keys.c.project_id).where(api_keys.c.key_hash == digest))
            if owner is None:
                conn.execute(
                    api_keys.insert().values(
                        id=new_id("key"),
                        project_id=project_id,
                        key_hash=digest,
                        hint=key[-4:],
                        created_at=int(time.time()),
                    )
                )
            elif owner != project_id:
                raise ValueError("that key already belongs to another project")

        await self._db.write(tx)
        return key

    async def resolve(self, id_or_name: str) -> str | None:
        """A project's id, given its id or its name (`default` → `proj_default`)."""
        return await self._db.lookup(
            lambda conn: conn.scalar(
                select(projects.c.id).where(
                    (projects.c.id == id_or_name) | (projects.c.name == id_or_name)
                )
            )
        )

    async def project_for_key(self, key: str) -> str | None:
        digest = hash_key(key)
        owner = await self._db.lookup(
            lambda conn: conn.scalar(
                select(api_keys.c.project_id).where(api_keys.c.key_hash == digest)
            )
        )
        return None if owner is None else str(owner)

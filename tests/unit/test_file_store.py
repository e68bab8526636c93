"""The `files` table on SQLite and PostgreSQL: ids that exist per project, the delete cascade into
`tool_resources`, expiry, and the purge of expired files (rows and blobs), plus the upgrade of a
database created before the table existed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from assistants.errors import NotFound
from assistants.files import LocalBlobStorage, file_key
from assistants.files.expiry import purge_expired_files
from assistants.store import Store
from assistants.store.files import missing_file_ids, new_file_id
from assistants.store.migrations import LATEST, MIGRATIONS
from assistants.testing.postgres import PostgresCluster

_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"files_{next(_counter)}_{int(time.time())}")
    store = Store.from_url(url)
    assert await store.migrate() == [LATEST]
    yield store
    await store.close()


async def add(
    store: Store, blobs: LocalBlobStorage, project: str, *, expires_after_s: int | None = None
) -> str:
    file_id = new_file_id()
    key = file_key(project, file_id)

    async def one() -> AsyncIterator[bytes]:
        yield b"bytes of " + file_id.encode()

    size = await blobs.put(key, one())
    await store.files.create(
        project,
        file_id=file_id,
        filename="f.txt",
        purpose="assistants",
        size=size,
        content_type="text/plain",
        sha256="0" * 64,
        storage_key=key,
        expires_after_s=expires_after_s,
    )
    return file_id


async def test_ids_are_per_project(store: Store, tmp_path: Path) -> None:
    blobs = LocalBlobStorage(tmp_path / "blobs")
    ours, theirs = await add(store, blobs, "proj_a"), await add(store, blobs, "proj_b")
    assert new_file_id().startswith("file-") and len(new_file_id()) == 29
    missing = await store.db.read(
        lambda conn: missing_file_ids(conn, "proj_a", [theirs, ours, "file-nope", theirs])
    )
    assert missing == [theirs, "file-nope"]
    assert set(await store.files.records("proj_a", [ours, theirs])) == {ours}
    record = await store.files.record("proj_a", ours)
    assert record.storage_key == file_key("proj_a", ours) and record.filename == "f.txt"
    with pytest.raises(NotFound, match=f"No such File object: {theirs}"):
        await store.files.get("proj_a", theirs)
    with pytest.raises(NotFound):
        await store.files.delete("proj_a", theirs)
    assert (await store.files.get("proj_b", theirs))["id"] == theirs


async def test_delete_cascades_into_tool_resources(store: Store, tmp_path: Path) -> None:
    blobs = LocalBlobStorage(tmp_path / "blobs")
    doomed, kept = await add(store, blobs, "proj_a"), await add(store, blobs, "proj_a")
    resources = {
        "code_interpreter": {"file_ids": [doomed, kept]},
        "file_search": {"vector_store_ids": []},
    }
    assistant = await store.assistants.create(
        "proj_a", {"model": "m", "tools": [], "metadata": {}, "tool_resources": resources}
    )
    other = await store.assistants.create(
        "proj_b", {"model": "m", "tools": [], "metadata": {}, "tool_resources": resources}
    )
    thread = await store.threads.create(
        "proj_a", {}, {"code_interpreter": {"file_ids": [doomed]}}, []
    )
    assert await store.files.delete("proj_a", doomed) == {
        "id": doomed,
        "object": "file",
        "deleted": True,
    }
    after = (await store.assistants.get("proj_a", assistant["id"]))["tool_resources"]
    assert after == {
        "code_interpreter": {"file_ids": [kept]},
        "file_search": {"vector_store_ids": []},
    }
    assert (await store.threads.get("proj_a", thread["id"]))["tool_resources"] == {
        "code_interpreter": {"file_ids": []}
    }
    # Another project's assistant naming the same id (it could not have: it is not theirs) is
    # left alone.
    untouched = (await store.assistants.get("proj_b", other["id"]))["tool_resources"]
    assert untouched == resources


async def test_expired_files_are_gone_then_purged(store: Store, tmp_path: Path) -> None:
    blobs = LocalBlobStorage(tmp_path / "blobs")
    lasting = await add(store, blobs, "proj_a")
    expiring = await add(store, blobs, "proj_a", expires_after_s=3600)
    assistant = await store.assistants.create(
        "proj_a",
        {
            "model": "m",
            "tools": [],
            "metadata": {},
            "tool_resources": {"code_interpreter": {"file_ids": [expiring]}},
        },
    )
    created = await store.files.get("proj_a", expiring)
    assert created["expires_at"] == created["created_at"] + 3600
    # Not yet expired: nothing to purge.
    assert await purge_expired_files(store, blobs) == 0
    # Make it expire now.
    await store.db.write(
        lambda conn: conn.execute(
            text("UPDATE files SET expires_at = :t WHERE id = :id"),
            {"t": int(time.time()) - 1, "id": expiring},
        )
    )
    with pytest.raises(NotFound):
        await store.files.get("proj_a", expiring)
    listed = await store.files.list_files(
        "proj_a", purpose=None, limit=100, order="desc", after=None
    )
    assert [f["id"] for f in listed["data"]] == [lasting]
    assert await purge_expired_files(store, blobs) == 1
    assert not blobs.path(file_key("proj_a", expiring)).exists()
    assert blobs.path(file_key("proj_a", lasting)).exists()
    resources = (await store.assistants.get("proj_a", assistant["id"]))["tool_resources"]
    assert resources == {"code_interpreter": {"file_ids": []}}
    assert await purge_expired_files(store, blobs) == 0


async def test_upgrade_adds_the_files_table(tmp_path: Path) -> None:
    """Migration 6 brings a database from before the Files API to the table `tables.py` has."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await store.migrate()
        await store.db.write(lambda conn: conn.execute(text("DROP TABLE files")))
        (files_migration,) = [fn for version, _, fn in MIGRATIONS if version == 6]
        await store.db.write(files_migration)
        blobs = LocalBlobStorage(tmp_path / "blobs")
        file_id = await add(store, blobs, "proj_a")
        assert (await store.files.get("proj_a", file_id))["bytes"] > 0
    finally:
        await store.close()

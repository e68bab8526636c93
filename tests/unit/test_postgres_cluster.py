"""The throw-away PostgreSQL cluster starts, serves asyncpg, creates databases and cleans up."""

from __future__ import annotations

import asyncpg
import pytest

from assistants.testing.postgres import PostgresCluster


async def _select_one(port: int, database: str) -> int:
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}")
    try:
        value: int = await connection.fetchval("select 1")
        return value
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_cluster_lifecycle() -> None:
    with PostgresCluster() as cluster:
        directory, port = cluster.directory, cluster.port
        assert directory is not None and directory.is_dir()
        assert cluster.url == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/assistants"
        assert await _select_one(port, "assistants") == 1

        url = cluster.create_database("second_db")
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/second_db"
        assert await _select_one(port, "second_db") == 1

    assert not directory.exists()
    with pytest.raises(OSError):  # the server is gone
        await _select_one(port, "assistants")
    cluster.stop()  # idempotent

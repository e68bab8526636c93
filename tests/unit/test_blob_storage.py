"""The blob storage protocol against both backends: the local filesystem, and the S3 backend
talking to a real S3 server process (moto's) over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistants.config import Settings
from assistants.files import (
    BlobNotFound,
    BlobStorage,
    LocalBlobStorage,
    blob_storage_from_settings,
    file_key,
)
from assistants.files.s3 import S3BlobStorage
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

MiB = 1024 * 1024


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class Boom(Exception):
    pass


async def failing_after(data: bytes, limit: int) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in chunked(data):
        if sent >= limit:
            raise Boom("the client went away")
        sent += len(chunk)
        yield chunk


def s3_storage(server: S3Server, **kwargs: int) -> S3BlobStorage:
    bucket = f"blobs-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return S3BlobStorage(
        bucket=bucket,
        prefix="tenant-a",
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        **kwargs,
    )


@dataclass
class Backend:
    blobs: BlobStorage
    s3: S3Server | None  # the server behind the S3 backend, to look at what it really stores


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        yield Backend(LocalBlobStorage(tmp_path), None)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    storage = s3_storage(server, part_size=5 * MiB)
    try:
        yield Backend(storage, server)
    finally:
        await storage.close()


@pytest.fixture
def blobs(backend: Backend) -> BlobStorage:
    return backend.blobs


async def test_round_trip_bytes_exactly(blobs: BlobStorage) -> None:
    data = os.urandom(3 * MiB + 17)
    key = file_key("proj_a", "file-roundtrip")
    assert await blobs.put(key, chunked(data)) == len(data)
    assert await blobs.read(key) == data
    pieces = [piece async for piece in blobs.stream(key)]
    assert b"".join(pieces) == data
    assert len(pieces) > 1  # streamed in bounded pieces, not as one buffer
    assert max(len(p) for p in pieces) <= 1 * MiB


async def test_large_upload_goes_in_parts(blobs: BlobStorage) -> None:
    data = os.urandom(12 * MiB + 5)  # three 5 MiB parts on S3 (the last one short)
    key = file_key("proj_a", "file-large")
    assert await blobs.put(key, chunked(data, 256 * 1024)) == len(data)
    assert await blobs.read(key) == data


async def test_empty_blob(blobs: BlobStorage) -> None:
    key = file_key("proj_a", "file-empty")
    assert await blobs.put(key, chunked(b"")) == 0
    assert await blobs.read(key) == b""
    assert [p async for p in blobs.stream(key)] == []


async def test_missing_key(blobs: BlobStorage) -> None:
    key = file_key("proj_a", "file-missing")
    with pytest.raises(BlobNotFound):
        await blobs.read(key)
    with pytest.raises(BlobNotFound):
        await anext(blobs.stream(key))
    await blobs.delete(key)  # idempotent


async def test_delete_removes_the_blob(blobs: BlobStorage) -> None:
    key = file_key("proj_a", "file-deleted")
    await blobs.put(key, chunked(b"some bytes"))
    await blobs.delete(key)
    with pytest.raises(BlobNotFound):
        await blobs.read(key)
    await blobs.delete(key)


async def test_overwrite_replaces_whole_blob(blobs: BlobStorage) -> None:
    key = file_key("proj_a", "file-over")
    await blobs.put(key, chunked(b"first version, longer"))
    await blobs.put(key, chunked(b"second"))
    assert await blobs.read(key) == b"second"


@pytest.mark.parametrize("size", [2 * MiB, 11 * MiB])  # S3: single PUT / multipart
async def test_failed_upload_leaves_nothing(backend: Backend, size: int, tmp_path: Path) -> None:
    key = file_key("proj_a", f"file-failed-{size}")
    with pytest.raises(Boom):
        await backend.blobs.put(key, failing_after(os.urandom(size), size - 1 * MiB))
    with pytest.raises(BlobNotFound):
        await backend.blobs.read(key)
    if backend.s3 is None:
        assert list((tmp_path / "files" / "proj_a").iterdir()) == []  # no temp file left
    else:
        assert isinstance(backend.blobs, S3BlobStorage)
        assert backend.s3.multipart_uploads(backend.blobs.bucket) == []  # aborted
        assert backend.s3.object_keys(backend.blobs.bucket) == []


async def test_s3_keys_carry_the_prefix(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server)
    try:
        await storage.put(file_key("proj_b", "file-x"), chunked(b"abc"))
        assert s3_server.object_keys(storage.bucket) == ["tenant-a/files/proj_b/file-x"]
    finally:
        await storage.close()


def test_keys_cannot_escape(tmp_path: Path) -> None:
    storage = LocalBlobStorage(tmp_path)
    for bad in ("../etc/passwd", "files/../../x", "/abs", "files//x", "files/./x", ""):
        with pytest.raises(ValueError):
            storage.path(bad)


def test_backend_from_settings(tmp_path: Path) -> None:
    local = blob_storage_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalBlobStorage)
    assert local.path("files/p/f") == tmp_path.resolve() / "files" / "p" / "f"
    s3 = blob_storage_from_settings(
        Settings(files_backend="s3", files_s3_bucket="b", files_s3_prefix="/x/")
    )
    assert isinstance(s3, S3BlobStorage)
    assert s3.object_key("files/p/f") == "x/files/p/f"
    with pytest.raises(ValueError, match="BUCKET"):
        blob_storage_from_settings(Settings(files_backend="s3"))

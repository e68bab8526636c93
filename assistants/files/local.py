"""Blob storage on the local filesystem (the default; what `make dev` uses).

Writes are atomic: the bytes go to a temporary file beside the target, are flushed and fsynced,
then renamed over the key's path, so a reader sees the whole blob or none, and a crash or a
cancelled upload leaves at most a temporary file (removed on the failure path). File I/O runs on
worker threads so a large upload never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from assistants.files.base import BlobNotFound, check_key

_WRITE_BUFFER = 1 << 20  # batch small network chunks into ~1 MiB writes (one thread hop each)


class LocalBlobStorage:
    def __init__(self, root: Path, *, chunk_size: int = 1 << 20) -> None:
        self.root = root
        self._chunk_size = chunk_size

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        target = self.path(key)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
        written = 0
        try:
            async with await anyio.open_file(temp, "wb") as out:
                buffer = bytearray()
                async for chunk in chunks:
                    buffer += chunk
                    written += len(chunk)
                    if len(buffer) >= _WRITE_BUFFER:
                        await out.write(bytes(buffer))
                        buffer.clear()
                if buffer:
                    await out.write(bytes(buffer))
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            await anyio.to_thread.run_sync(os.replace, temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # synchronous on purpose: must run even when cancelled
            raise
        return written

    async def read(self, key: str) -> bytes:
        try:
            return await anyio.Path(self.path(key)).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        try:
            source = await anyio.open_file(self.path(key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        # An open file stays readable even if the blob is deleted meanwhile (POSIX).
        async with source:
            while chunk := await source.read(self._chunk_size):
                yield chunk

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

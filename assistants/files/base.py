"""The blob storage protocol: where the bytes of uploaded files live.

Rows in the store hold a file's metadata and its storage key; the bytes live behind this small
protocol, so the API (which writes them) and the workers (which read them for ingestion and for
image inputs) can run on different machines when the backend is an object store. Bytes never
travel through Temporal history or the SQL rows of the hot path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class BlobNotFound(Exception):
    """No blob is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob stored under {key!r}")
        self.key = key


@runtime_checkable
class BlobStorage(Protocol):
    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the chunks under `key`, all or nothing: a failure (or cancellation) midway
        leaves no blob behind and nothing readable under the key. Returns the bytes written."""
        ...

    async def read(self, key: str) -> bytes:
        """The whole blob (for small files only); `BlobNotFound` if absent."""
        ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The blob in chunks, with bounded memory; `BlobNotFound` (on the first step) if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; deleting an absent key is not an error."""
        ...


def file_key(project_id: str, file_id: str) -> str:
    """The storage key of an uploaded file: `files/<project>/<file id>`."""
    return check_key(f"files/{project_id}/{file_id}")


def check_key(key: str) -> str:
    """Keys are made by the server; refuse anything that could escape a directory anyway."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")
    return key

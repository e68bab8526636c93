"""Blob storage in an S3-compatible object store (AWS S3, MinIO, Ceph, R2, …), for deployments
where the API and the workers run on several machines.

Uploads stream: bytes are buffered up to one part (8 MiB) and sent as a single `PutObject` when
the whole blob fits in it, otherwise as a multipart upload, part by part, so memory stays bounded
whatever the file's size. A failed or cancelled upload is aborted, so no partial object is ever
visible under the key. One client (one connection pool) per storage object, opened lazily on the
event loop that first uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from assistants.files.base import BlobNotFound, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PART_SIZE = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB (except the last)
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3BlobStorage:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
        read_chunk_size: int = 1 << 20,
    ) -> None:
        self.bucket = bucket
        self._prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._part_size = part_size
        self._read_chunk_size = read_chunk_size
        self._client: S3Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    async def client(self) -> S3Client:
        async with self._lock:
            if self._client is None:
                config = AioConfig(
                    # Path-style addressing works with every S3-compatible server; AWS too.
                    s3={"addressing_style": "path"} if self._endpoint_url else None,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # Checksums only where S3 requires them: many S3-compatible servers do not
                    # implement the newer default CRC trailers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                creator = get_session().create_client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=config,
                )
                self._client = await self._stack.enter_async_context(creator)
            return self._client

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        client, name = await self.client(), self.object_key(key)
        buffer = bytearray()
        written = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def send_part(body: bytes) -> None:
            number = len(parts) + 1
            assert upload_id is not None
            answer = await client.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=body
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                while len(buffer) >= self._part_size:
                    if upload_id is None:
                        started = await client.create_multipart_upload(Bucket=self.bucket, Key=name)
                        upload_id = started["UploadId"]
                    body = bytes(buffer[: self._part_size])
                    del buffer[: self._part_size]
                    await send_part(body)
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer))
            else:
                if buffer:
                    await send_part(bytes(buffer))
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
            raise
        return written

    async def read(self, key: str) -> bytes:
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as error:
            raise _translated(error, key) from None
        async with answer["Body"] as body:
            data: bytes = await body.read()
            return data

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as error:
            raise _translated(error, key) from None
        async with answer["Body"] as body:
            while chunk := await body.read(self._read_chunk_size):
                yield chunk

    async def delete(self, key: str) -> None:
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _translated(error: ClientError, key: str) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return BlobNotFound(key) if code in _MISSING else error

"""Blob storage for uploaded files: the protocol, its two backends, and the factory that picks
one from the settings (`ASSISTANTS_FILES_BACKEND`). The S3 backend (`assistants.files.s3`) is
imported only when configured: its client library takes a second or more to import."""

from __future__ import annotations

from assistants.config import Settings
from assistants.files.base import BlobNotFound, BlobStorage, check_key, file_key
from assistants.files.local import LocalBlobStorage


def blob_storage_from_settings(settings: Settings) -> BlobStorage:
    if settings.files_backend == "s3":
        if not settings.files_s3_bucket:
            raise ValueError("ASSISTANTS_FILES_BACKEND=s3 needs ASSISTANTS_FILES_S3_BUCKET")
        from assistants.files.s3 import S3BlobStorage

        return S3BlobStorage(
            bucket=settings.files_s3_bucket,
            prefix=settings.files_s3_prefix,
            endpoint_url=settings.files_s3_endpoint_url,
            region=settings.files_s3_region,
            access_key_id=settings.files_s3_access_key_id,
            secret_access_key=settings.files_s3_secret_access_key,
        )
    return LocalBlobStorage(settings.data_dir.resolve())


async def close_blob_storage(blobs: BlobStorage) -> None:
    """Release the backend's connections (the S3 client's pool), if it holds any."""
    close = getattr(blobs, "close", None)
    if close is not None:
        await close()


__all__ = [
    "BlobNotFound",
    "BlobStorage",
    "LocalBlobStorage",
    "blob_storage_from_settings",
    "check_key",
    "close_blob_storage",
    "file_key",
]

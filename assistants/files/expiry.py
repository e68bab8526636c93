"""Removing files past their `expires_after`.

An expired file is already gone for the API (every read filters on `expires_at`); this purge
reclaims its row, its references and its bytes. It is idempotent and safe to run from several
API processes at once: a file another process removed first is simply skipped.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from assistants.errors import NotFound
from assistants.files.base import BlobStorage
from assistants.store import Store

log = structlog.get_logger(__name__)


async def purge_expired_files(
    store: Store, blobs: BlobStorage, *, now: int | None = None, batch: int = 100
) -> int:
    """Delete every file whose `expires_at` has passed; returns how many were removed."""
    removed = 0
    moment = int(time.time()) if now is None else now
    while expired := await store.files.expired(moment, limit=batch):
        progress = 0
        for project_id, file_id in expired:
            try:
                record = await store.files.remove(project_id, file_id)
            except NotFound:
                continue  # another process got there first
            await blobs.delete(record.storage_key)
            log.info("expired file removed", file_id=file_id, project_id=project_id)
            progress += 1
        removed += progress
        if len(expired) < batch or progress == 0:
            break
    return removed


async def purge_forever(store: Store, blobs: BlobStorage, interval_s: float = 60.0) -> None:
    while True:
        try:
            await purge_expired_files(store, blobs)
        except Exception:
            log.warning("expired file purge failed; retrying later", exc_info=True)
        await asyncio.sleep(interval_s)

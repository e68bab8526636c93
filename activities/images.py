"""`image_file` message parts → inline images for the model.

A thread's messages hold `image_file` parts by file id (as the Assistants API stores them); a
Chat Completions backend needs the image itself. Before the prompt is built, the model activity
replaces each `image_file` part of a user message with an `image_url` part carrying a `data:` URL of
the file's bytes, read from blob storage. The bytes go from storage to the backend inside the
activity and never enter Temporal history. A file deleted since (or whose bytes are gone) stays an
`image_file` part, which the prompt shows as a placeholder.
"""

from __future__ import annotations

from typing import Any

import structlog

from assistants.files import BlobNotFound, BlobStorage
from assistants.files.images import MAX_IMAGE_BYTES, data_url
from assistants.store import Store

log = structlog.get_logger(__name__)

History = list[tuple[str, list[dict[str, Any]]]]


class ImageInliner:
    def __init__(self, store: Store, blobs: BlobStorage) -> None:
        self._store = store
        self._blobs = blobs

    async def inline(self, project_id: str, history: History) -> History:
        wanted = {
            block["image_file"]["file_id"]
            for role, blocks in history
            if role == "user"
            for block in blocks
            if block.get("type") == "image_file"
        }
        if not wanted:
            return history
        records = await self._store.files.records(project_id, sorted(wanted))
        urls: dict[str, str] = {}
        for file_id, record in records.items():
            if record.bytes > MAX_IMAGE_BYTES:
                continue
            try:
                urls[file_id] = data_url(
                    await self._blobs.read(record.storage_key), record.content_type
                )
            except BlobNotFound:
                log.warning("image file bytes missing", file_id=file_id, project_id=project_id)
        return [
            (role, [_inlined(role, block, urls) for block in blocks]) for role, blocks in history
        ]


def _inlined(role: str, block: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    if role != "user" or block.get("type") != "image_file":
        return block
    image = block["image_file"]
    url = urls.get(image["file_id"])
    if url is None:
        return block
    image_url: dict[str, Any] = {"url": url}
    if image.get("detail"):
        image_url["detail"] = image["detail"]
    return {"type": "image_url", "image_url": image_url}

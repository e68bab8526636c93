"""Image files as vision models take them: which uploads count as images, and the `data:` URL
an `image_file` message part becomes in a Chat Completions request (backends cannot fetch our
files, so the bytes travel inline)."""

from __future__ import annotations

import base64
import mimetypes

# What OpenAI's vision input accepts.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Larger images are refused when the message is created (OpenAI's per-image limit is 20 MB, and the
# worker holds an image in memory, base64-encoded, while it calls the model).
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def image_type(content_type: str, filename: str) -> str | None:
    """The image media type of an upload (from its declared type, else its name), or None."""
    if content_type in IMAGE_TYPES:
        return content_type
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed if guessed in IMAGE_TYPES else None


def sniff(data: bytes) -> str | None:
    """The image type the bytes themselves announce (their magic number), if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def data_url(data: bytes, content_type: str) -> str:
    media = sniff(data) or content_type
    return f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"

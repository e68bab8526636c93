"""File ids named in request bodies, checked against the Files API before anything is written.

`tool_resources.code_interpreter.file_ids` (assistants, threads, create-and-run), message
`attachments[].file_id` and `image_file` content parts must name files of the caller's project;
an `image_file` must also be an image a vision model can take. An unknown id (or another
project's: the same answer) is a 400 naming the parameter, raised before the request writes
anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from assistants.errors import InvalidRequest
from assistants.files.images import IMAGE_TYPES, MAX_IMAGE_BYTES, image_type
from assistants.requests import ImageFilePart, MessageCreate, ToolResources
from assistants.store.files import FileStore


@dataclass(frozen=True)
class FileRef:
    param: str
    file_id: str
    image: bool = False  # must be an image (an `image_file` part)


def tool_resource_refs(resources: ToolResources | None, prefix: str) -> list[FileRef]:
    code = resources.code_interpreter if resources is not None else None
    if code is None:
        return []
    return [
        FileRef(f"{prefix}.code_interpreter.file_ids[{index}]", file_id)
        for index, file_id in enumerate(code.file_ids)
    ]


def message_refs(message: MessageCreate, prefix: str = "") -> list[FileRef]:
    refs = [
        FileRef(f"{prefix}attachments[{index}].file_id", attachment.file_id)
        for index, attachment in enumerate(message.attachments or [])
    ]
    if not isinstance(message.content, str):
        refs += [
            FileRef(f"{prefix}content[{index}].image_file.file_id", part.image_file.file_id, True)
            for index, part in enumerate(message.content)
            if isinstance(part, ImageFilePart)
        ]
    return refs


def messages_refs(messages: Iterable[MessageCreate] | None, prefix: str) -> list[FileRef]:
    return [
        ref
        for index, message in enumerate(messages or [])
        for ref in message_refs(message, f"{prefix}[{index}].")
    ]


async def require_files(files: FileStore, project_id: str, refs: list[FileRef]) -> None:
    """Raise a 400 for the first ref that names no file of the project (or no usable image)."""
    if not refs:
        return
    found = await files.records(project_id, [ref.file_id for ref in refs])
    for ref in refs:
        record = found.get(ref.file_id)
        if record is None:
            raise InvalidRequest(
                f"Invalid '{ref.param}': no file found with id '{ref.file_id}'.",
                param=ref.param,
                code="invalid_value",
            )
        if not ref.image:
            continue
        if image_type(record.content_type, record.filename) is None:
            kinds = ", ".join(kind.removeprefix("image/") for kind in IMAGE_TYPES)
            raise InvalidRequest(
                f"Invalid '{ref.param}': file '{ref.file_id}' is not an image ({kinds}).",
                param=ref.param,
                code="invalid_value",
            )
        if record.bytes > MAX_IMAGE_BYTES:
            raise InvalidRequest(
                f"Invalid '{ref.param}': image file '{ref.file_id}' is larger than "
                f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB.",
                param=ref.param,
                code="invalid_value",
            )

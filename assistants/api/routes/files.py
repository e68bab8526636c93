"""`/v1/files`: upload, list, retrieve, delete, and download the bytes.

The SDK's `files.*` calls send no `OpenAI-Beta` header (they are not part of the Assistants beta),
and an upload is multipart, not JSON: it is streamed into blob storage under its own size cap
(`ASSISTANTS_MAX_FILE_BYTES`), never through the JSON body reader. A row is written only once the
bytes are stored and every field is valid; any failure deletes the blob, so a refused upload
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from assistants.api.context import services
from assistants.api.http import ok, page_params, project
from assistants.api.uploads import Upload, content_disposition, receive_upload
from assistants.errors import InvalidRequest
from assistants.files import BlobNotFound, file_key
from assistants.store.files import new_file_id, not_found

log = structlog.get_logger(__name__)

# The spec's upload purposes, less `evals`: this server has no Evals API, and the spec's file
# object cannot even carry that purpose (its `purpose` enum lacks it), so such a file could not be
# served back valid. Refused like any unknown purpose.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
SERVER_PURPOSES = ("assistants_output", "batch_output", "fine-tune-results")
EXPIRES_MIN_S, EXPIRES_MAX_S = 3600, 2_592_000
_FIELDS = {"purpose", "expires_after", "expires_after[anchor]", "expires_after[seconds]"}


def _choices(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _purpose(upload: Upload) -> str:
    purpose = upload.fields.get("purpose")
    if purpose is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    if purpose in SERVER_PURPOSES:
        raise InvalidRequest(
            f"Invalid value: '{purpose}'. Files with purpose '{purpose}' are created by the "
            f"server only. Supported values are: {_choices(UPLOAD_PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"Invalid value: '{purpose}'. Supported values are: {_choices(UPLOAD_PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    return purpose


def _expires_after_s(upload: Upload) -> int | None:
    """`expires_after` as the SDK sends it (`expires_after[anchor]`, `expires_after[seconds]`
    form fields) or as one JSON-encoded field; the seconds after `created_at`."""
    fields = upload.fields
    if "expires_after" in fields:
        if "expires_after[anchor]" in fields or "expires_after[seconds]" in fields:
            raise InvalidRequest("Duplicate parameter: 'expires_after'.", param="expires_after")
        try:
            given = json.loads(fields["expires_after"])
        except ValueError:
            given = None
        if not isinstance(given, dict):
            raise InvalidRequest(
                "Invalid type for 'expires_after': expected an object.",
                param="expires_after",
                code="invalid_type",
            )
        anchor, seconds = given.get("anchor"), given.get("seconds")
        extra = sorted(set(given) - {"anchor", "seconds"})
        if extra:
            raise InvalidRequest(
                f"Unrecognized request argument supplied: expires_after.{extra[0]}",
                param=f"expires_after.{extra[0]}",
            )
    elif "expires_after[anchor]" in fields or "expires_after[seconds]" in fields:
        anchor, raw = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
        seconds = int(raw) if raw is not None and raw.lstrip("-").isdigit() else raw
    else:
        return None
    if anchor is None:
        raise InvalidRequest(
            "Missing required parameter: 'expires_after.anchor'.", param="expires_after.anchor"
        )
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value: {json.dumps(anchor)}. Supported values are: 'created_at'.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    if seconds is None:
        raise InvalidRequest(
            "Missing required parameter: 'expires_after.seconds'.", param="expires_after.seconds"
        )
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise InvalidRequest(
            "Invalid type for 'expires_after.seconds': expected an integer, but got "
            f"{json.dumps(seconds)} instead.",
            param="expires_after.seconds",
            code="invalid_type",
        )
    if seconds < EXPIRES_MIN_S:
        raise InvalidRequest(
            "Invalid 'expires_after.seconds': integer below minimum value. Expected a value >= "
            f"{EXPIRES_MIN_S}, but got {seconds} instead.",
            param="expires_after.seconds",
            code="integer_below_min_value",
        )
    if seconds > EXPIRES_MAX_S:
        raise InvalidRequest(
            "Invalid 'expires_after.seconds': integer above maximum value. Expected a value <= "
            f"{EXPIRES_MAX_S}, but got {seconds} instead.",
            param="expires_after.seconds",
            code="integer_above_max_value",
        )
    return seconds


def _validate(upload: Upload) -> tuple[str, int | None]:
    unknown = sorted(set(upload.fields) - _FIELDS)
    if unknown:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    if upload.file is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    purpose = _purpose(upload)
    expires_after_s = _expires_after_s(upload)
    if upload.file.size == 0:
        raise InvalidRequest("Invalid file: the file is empty.", param="file", code="invalid_value")
    return purpose, expires_after_s


async def create(request: Request) -> Response:
    svc, pid = services(request), project(request)
    file_id = new_file_id()
    key = file_key(pid, file_id)
    upload = await receive_upload(
        request, blobs=svc.blobs, key=key, max_file_bytes=svc.settings.max_file_bytes
    )
    try:
        purpose, expires_after_s = _validate(upload)
        assert upload.file is not None
        created = await svc.store.files.create(
            pid,
            file_id=file_id,
            filename=upload.file.filename,
            purpose=purpose,
            size=upload.file.size,
            content_type=upload.file.content_type,
            sha256=upload.file.sha256,
            storage_key=key,
            expires_after_s=expires_after_s,
        )
    except BaseException:
        with contextlib.suppress(Exception):  # report the original error
            await svc.blobs.delete(key)
        raise
    log.info("file uploaded", file_id=file_id, bytes=upload.file.size, purpose=purpose)
    return ok(created)


async def list_(request: Request) -> Response:
    page = page_params(request, default_limit=10_000, max_limit=10_000)
    purpose = request.query_params.get("purpose") or None
    return ok(
        await services(request).store.files.list_files(
            project(request), purpose=purpose, limit=page.limit, order=page.order, after=page.after
        )
    )


async def retrieve(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    return ok(await services(request).store.files.get(project(request), file_id))


async def delete(request: Request) -> Response:
    svc, file_id = services(request), request.path_params["file_id"]
    record = await svc.store.files.remove(project(request), file_id)
    # After the commit: a blob left behind by a failure here is unreachable, never half a file.
    try:
        await svc.blobs.delete(record.storage_key)
    except Exception:
        log.warning("file blob not deleted", file_id=file_id, exc_info=True)
    log.info("file deleted", file_id=file_id)
    return ok({"id": file_id, "object": "file", "deleted": True})


async def content(request: Request) -> Response:
    svc, file_id = services(request), request.path_params["file_id"]
    record = await svc.store.files.record(project(request), file_id)
    chunks = svc.blobs.stream(record.storage_key)
    # Open the blob before answering, so a missing blob is a clean error, not a cut stream.
    try:
        first = await anext(chunks, b"")
    except BlobNotFound:
        log.error("file blob missing", file_id=file_id)
        raise not_found(file_id) from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(),
        headers={
            "content-type": record.content_type,
            "content-length": str(record.bytes),
            "content-disposition": content_disposition(record.filename),
        },
    )


routes = [
    Route("/files", create, methods=["POST"]),
    Route("/files", list_, methods=["GET"]),
    Route("/files/{file_id}", retrieve, methods=["GET"]),
    Route("/files/{file_id}", delete, methods=["DELETE"]),
    Route("/files/{file_id}/content", content, methods=["GET"]),
]

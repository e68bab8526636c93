"""`multipart/form-data` uploads, parsed as a stream.

`POST /files` can carry up to `ASSISTANTS_MAX_FILE_BYTES` (512 MB by default), so the body is never
held whole in memory, nor spooled to a temporary file first: the request stream is fed to
python-multipart's incremental parser, and the bytes of the `file` part go straight into
`BlobStorage.put` as they arrive, counted and hashed on the way. The other parts (small text
fields) are collected with a size cap. Whatever goes wrong (too large, malformed, a client that
disconnects), the caller deletes the half-written blob, so nothing is left behind.

The multipart part may come before or after the text fields (the SDK sends the fields first,
`curl -F file=@… -F purpose=…` the file first), so field validation happens after the body.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import re
import unicodedata
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from assistants.errors import APIError, InvalidRequest
from assistants.files import BlobStorage

MAX_FIELDS_BYTES = 64 * 1024  # all text fields together
MAX_FILENAME_CHARS = 512
# After the cap is exceeded, the rest of the body is read (and dropped) up to this much more, so
# the client, which sends its whole body before reading the answer, gets the 413 rather than a
# reset connection. Beyond it the connection is simply closed.
DRAIN_LIMIT = 64 * 1024 * 1024
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")


class FileTooLarge(APIError):
    status_code = 413
    type = "invalid_request_error"


@dataclass
class StoredFile:
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    file: StoredFile | None = None


@dataclass
class _Part:
    name: str
    filename: str | None  # None: a text field
    content_type: str | None


class _MultipartStream:
    """Pulls request chunks through the incremental parser on demand, one event at a time."""

    def __init__(self, request: Request, boundary: bytes) -> None:
        self._body = request.stream().__aiter__()
        self._events: deque[tuple[str, Any]] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._ended = False
        self._body_done = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_piece,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": lambda: self._events.append(("end", None)),
                "on_end": self._end,
            },
        )

    # --- parser callbacks (synchronous; they only queue events) ---------------------------------

    def _part_begin(self) -> None:
        self._headers = []

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._header_name).lower(), bytes(self._header_value)))
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        self._events.append(("part", _describe(self._headers)))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _end(self) -> None:
        self._ended = True

    # --- pulling -----------------------------------------------------------------------------

    async def _event(self) -> tuple[str, Any] | None:
        while not self._events:
            if self._body_done:
                if not self._ended:
                    raise _malformed("the body ended before the closing boundary")
                return None
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._body_done = True
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as error:  # every parse error of python-multipart
                raise _malformed(str(error)) from None
        return self._events.popleft()

    async def next_part(self) -> _Part | None:
        while (event := await self._event()) is not None:
            kind, value = event
            if kind == "part":
                part: _Part = value
                return part
            # "data"/"end" of a part nobody read: skipped
        return None

    async def part_data(self) -> AsyncIterator[bytes]:
        """The current part's data, up to its end."""
        while (event := await self._event()) is not None:
            kind, value = event
            if kind == "end":
                return
            if kind == "data":
                yield value
        raise _malformed("the body ended inside a part")

    async def drain(self, limit: int) -> None:
        """Read and drop the rest of the body (at most `limit` more bytes)."""
        dropped = 0
        self._events.clear()
        while not self._body_done and dropped <= limit:
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._body_done = True
                break
            dropped += len(chunk)


def _malformed(detail: str) -> InvalidRequest:
    return InvalidRequest(
        f"We could not parse the multipart/form-data body of your request ({detail}).",
    )


def _describe(headers: list[tuple[bytes, bytes]]) -> _Part:
    found = dict(headers)
    disposition, params = parse_options_header(
        found.get(b"content-disposition", b"").decode("latin-1")
    )
    if disposition != b"form-data" or b"name" not in params:
        raise _malformed("a part has no Content-Disposition: form-data name")
    try:
        name = params[b"name"].decode("utf-8")
        raw_filename = params.get(b"filename")
        filename = None if raw_filename is None else raw_filename.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(
            "Invalid 'file': the filename is not valid UTF-8.", param="file", code="invalid_value"
        ) from None
    media, _ = parse_options_header(found.get(b"content-type", b"").decode("latin-1"))
    content_type = media.decode("latin-1")
    return _Part(
        name=name,
        filename=filename,
        content_type=content_type if _MEDIA_TYPE.match(content_type) else None,
    )


def clean_filename(raw: str) -> str:
    """The name to keep: its last path component, without surrounding blanks. Control
    characters (NUL included) and lone surrogates are refused rather than altered."""
    name = re.split(r"[/\\]", raw)[-1].strip()
    if not name:
        raise InvalidRequest(
            "Invalid 'file': the filename is empty.", param="file", code="invalid_value"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise InvalidRequest(
            "Invalid 'file': the filename contains a control character or an invalid code point.",
            param="file",
            code="invalid_value",
        )
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidRequest(
            f"Invalid 'file': the filename is too long. Expected at most {MAX_FILENAME_CHARS} "
            f"characters, but got {len(name)}.",
            param="file",
            code="invalid_value",
        )
    return name


def _media_type(declared: str | None, filename: str) -> str:
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or declared or "application/octet-stream"


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name as `filename*`."""
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _boundary(request: Request) -> bytes:
    raw = request.headers.get("content-type", "")
    media, params = parse_options_header(raw)
    boundary = params.get(b"boundary", b"")
    if media != b"multipart/form-data" or not 0 < len(boundary) <= 70:  # RFC 2046: 1-70
        raise InvalidRequest(
            f"Invalid Content-Type header ({raw[:100] or 'none'}), expected multipart/form-data "
            "with a boundary. (HINT: upload files as multipart/form-data, e.g. "
            "`curl -F file=@doc.pdf -F purpose=assistants`.)"
        )
    return boundary


async def receive_upload(
    request: Request, *, blobs: BlobStorage, key: str, max_file_bytes: int
) -> Upload:
    """Parse the body, storing the `file` part's bytes under `key` as they arrive. On any
    failure the blob is deleted before the error propagates, so nothing is left behind."""
    declared = request.headers.get("content-length")
    slack = MAX_FIELDS_BYTES + DRAIN_LIMIT
    if declared is not None and declared.isdigit() and int(declared) > max_file_bytes + slack:
        raise _too_large(max_file_bytes, int(declared))
    stream = _MultipartStream(request, _boundary(request))
    upload = Upload()
    stored = False
    try:
        while (part := await stream.next_part()) is not None:
            if part.filename is None:
                if part.name == "file":
                    raise InvalidRequest(
                        "Invalid type for 'file': expected a file (a part with a filename), but "
                        "got a text field instead.",
                        param="file",
                        code="invalid_type",
                    )
                if part.name in upload.fields:
                    raise InvalidRequest(f"Duplicate parameter: '{part.name}'.", param=part.name)
                upload.fields[part.name] = await _text_field(stream, part, upload)
                continue
            if part.name != "file":
                raise InvalidRequest(
                    f"Unrecognized request argument supplied: {part.name}", param=part.name
                )
            if upload.file is not None:
                raise InvalidRequest("Duplicate parameter: 'file'.", param="file")
            stored = True
            upload.file = await _store_file(stream, part.filename, part, blobs, key, max_file_bytes)
        return upload
    except APIError:
        # Refused: read the rest (bounded) so the client, still sending, gets the answer.
        await stream.drain(DRAIN_LIMIT)
        if stored:
            await blobs.delete(key)
        raise
    except BaseException:
        if stored:
            with contextlib.suppress(Exception):  # the original error is the one to report
                await blobs.delete(key)
        raise


async def _store_file(
    stream: _MultipartStream,
    raw_filename: str,
    part: _Part,
    blobs: BlobStorage,
    key: str,
    max_file_bytes: int,
) -> StoredFile:
    filename = clean_filename(raw_filename)
    digest = hashlib.sha256()
    counted = 0

    async def capped(data: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        nonlocal counted
        async for chunk in data:
            counted += len(chunk)
            if counted > max_file_bytes:
                raise _too_large(max_file_bytes, counted)
            digest.update(chunk)
            yield chunk

    size = await blobs.put(key, capped(stream.part_data()))
    return StoredFile(
        filename=filename,
        content_type=_media_type(part.content_type, filename),
        size=size,
        sha256=digest.hexdigest(),
    )


async def _text_field(stream: _MultipartStream, part: _Part, upload: Upload) -> str:
    used = sum(len(value) for value in upload.fields.values())
    data = bytearray()
    async for chunk in stream.part_data():
        data += chunk
        if used + len(data) > MAX_FIELDS_BYTES:
            raise InvalidRequest(
                f"Invalid '{part.name}': the form fields are too large "
                f"(at most {MAX_FIELDS_BYTES} bytes in all).",
                param=part.name,
            )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(
            f"Invalid '{part.name}': expected UTF-8 text.", param=part.name, code="invalid_value"
        ) from None


def _too_large(limit: int, received: int) -> FileTooLarge:
    return FileTooLarge(
        f"Maximum content size limit ({limit}) exceeded ({received} bytes read).",
        param="file",
        code="file_too_large",
    )

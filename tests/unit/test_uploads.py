"""The streaming multipart reader of `POST /files`, driven with real ASGI requests (a Starlette
`Request` over a scope and a `receive` channel that hands the body over in small pieces, as a
server does), storing into real local blob storage."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from assistants.api.uploads import (
    FileTooLarge,
    clean_filename,
    content_disposition,
    receive_upload,
)
from assistants.errors import InvalidRequest
from assistants.files import LocalBlobStorage, file_key
from tests.support import samples

KEY = file_key("proj_t", "file-under-test")


def request(
    body: bytes,
    content_type: str,
    *,
    piece: int = 7000,
    disconnect_after: int | None = None,
    declared_length: int | None = None,
) -> tuple[Request, Callable[[], int]]:
    """A request whose body arrives in `piece`-byte messages (optionally cut off), and a
    function telling how many bytes the app has pulled so far."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if disconnect_after is not None and pulled >= disconnect_after:
            return {"type": "http.disconnect"}
        chunk = body[pulled : pulled + piece]
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < len(body)}

    headers = [(b"content-type", content_type.encode())]
    length = len(body) if declared_length is None else declared_length
    headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}
    receiver: Callable[[], Awaitable[dict[str, Any]]] = receive
    return Request(scope, receiver), lambda: pulled


def form(
    data: bytes, *, filename: bytes = b"data.bin", file_first: bool = False
) -> tuple[bytes, str]:
    file = samples.file_part(filename, data, b"application/octet-stream")
    purpose = samples.field_part("purpose", "assistants")
    return samples.multipart([file, purpose] if file_first else [purpose, file])


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStorage:
    return LocalBlobStorage(tmp_path)


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("file_first", [False, True])
async def test_streams_the_file_into_storage(blobs: LocalBlobStorage, file_first: bool) -> None:
    data = os.urandom(300_000) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
    req, _ = request(*form(data, file_first=file_first))
    upload = await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=1_000_000)
    assert upload.fields == {"purpose": "assistants"}
    assert upload.file is not None and upload.file.size == len(data)
    assert upload.file.filename == "data.bin"
    assert upload.file.content_type == "application/octet-stream"
    assert await blobs.read(KEY) == data


async def test_media_type_from_the_name_when_generic(blobs: LocalBlobStorage) -> None:
    req, _ = request(*form(samples.png(), filename=b"dir/sub\\pixel.png"))
    upload = await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=10_000)
    assert upload.file is not None
    assert upload.file.filename == "pixel.png"  # the last path component only
    assert upload.file.content_type == "image/png"


async def test_too_large_stops_storing_and_leaves_nothing(
    blobs: LocalBlobStorage, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    body, content_type = form(data)
    req, pulled = request(body, content_type)
    with pytest.raises(FileTooLarge) as raised:
        await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=100_000)
    assert raised.value.status_code == 413
    assert raised.value.message.startswith("Maximum content size limit (100000) exceeded")
    assert stored_files(tmp_path) == []  # neither the blob nor a temporary file
    assert pulled() == len(body)  # the rest was read (and dropped): the client gets the 413


async def test_declared_length_far_over_the_cap_is_refused_unread(blobs: LocalBlobStorage) -> None:
    body, content_type = form(b"small")
    req, pulled = request(body, content_type, declared_length=10**12)
    with pytest.raises(FileTooLarge):
        await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=1000)
    assert pulled() == 0


async def test_client_disconnect_leaves_nothing(blobs: LocalBlobStorage, tmp_path: Path) -> None:
    body, content_type = form(os.urandom(100_000))
    req, _ = request(body, content_type, disconnect_after=50_000)
    with pytest.raises(ClientDisconnect):
        await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=1_000_000)
    assert stored_files(tmp_path) == []


async def test_error_after_the_file_removes_it(blobs: LocalBlobStorage, tmp_path: Path) -> None:
    body, content_type = samples.multipart(
        [samples.file_part(b"a.txt", b"first"), samples.file_part(b"b.txt", b"second")]
    )
    req, _ = request(body, content_type)
    with pytest.raises(InvalidRequest, match="Duplicate parameter: 'file'"):
        await receive_upload(req, blobs=blobs, key=KEY, max_file_bytes=1000)
    assert stored_files(tmp_path) == []


async def test_malformed_bodies(blobs: LocalBlobStorage, tmp_path: Path) -> None:
    body, content_type = samples.multipart([samples.file_part(b"a.txt", b"abc")], close=False)
    with pytest.raises(InvalidRequest, match="could not parse"):
        await receive_upload(
            request(body, content_type)[0], blobs=blobs, key=KEY, max_file_bytes=99
        )
    with pytest.raises(InvalidRequest, match="expected multipart/form-data"):
        await receive_upload(
            request(b"{}", "application/json")[0], blobs=blobs, key=KEY, max_file_bytes=99
        )
    too_long = "multipart/form-data; boundary=" + "b" * 71
    with pytest.raises(InvalidRequest, match="expected multipart/form-data"):
        await receive_upload(request(b"", too_long)[0], blobs=blobs, key=KEY, max_file_bytes=99)
    no_name, content_type = samples.multipart([(b"Content-Disposition: form-data", b"x")])
    with pytest.raises(InvalidRequest, match="could not parse"):
        await receive_upload(
            request(no_name, content_type)[0], blobs=blobs, key=KEY, max_file_bytes=99
        )
    assert stored_files(tmp_path) == []


async def test_text_fields_are_capped(blobs: LocalBlobStorage) -> None:
    body, content_type = samples.multipart([samples.field_part("purpose", "x" * 70_000)])
    with pytest.raises(InvalidRequest, match="too large"):
        await receive_upload(request(body, content_type)[0], blobs=blobs, key=KEY, max_file_bytes=9)


def test_filenames() -> None:
    assert clean_filename("  report.pdf ") == "report.pdf"
    assert clean_filename("C:\\Users\\me\\notes.txt") == "notes.txt"
    assert clean_filename("naïve 名前.md") == "naïve 名前.md"
    for bad in ("", "a/", "nul\x00.txt", "bell\x07", "lone\ud800surrogate", "x" * 513):
        with pytest.raises(InvalidRequest):
            clean_filename(bad)


def test_content_disposition() -> None:
    assert content_disposition("plain.txt") == (
        "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"
    )
    assert content_disposition('quote"back\\slash 100%.txt') == (
        'attachment; filename="quote_back_slash 100_.txt"; '
        "filename*=UTF-8''quote%22back%5Cslash%20100%25.txt"
    )
    assert content_disposition("résumé.pdf") == (
        "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    )

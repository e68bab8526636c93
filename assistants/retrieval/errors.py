"""Why a file could not be ingested, in OpenAI's `last_error` vocabulary.

A vector-store file that fails ends `failed` with `last_error.code` one of `unsupported_file`,
`invalid_file` or `server_error` (the spec's enum). Parsing raises these so the ingestion
activity can record the code verbatim and mark the failure non-retryable: re-parsing the same
bytes can never succeed.
"""

from __future__ import annotations

from typing import Literal

IngestionErrorCode = Literal["unsupported_file", "invalid_file", "server_error"]


class IngestionError(Exception):
    """A file that cannot become chunks. `code` goes to `last_error.code`, `message` to
    `last_error.message` (it names the problem, never the file's content)."""

    code: IngestionErrorCode = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFile(IngestionError):
    """A file type we do not parse (unknown extension, binary data, an undecodable text)."""

    code: IngestionErrorCode = "unsupported_file"


class InvalidFile(IngestionError):
    """A supported type whose content is broken or empty (corrupt/encrypted PDF, a PDF with
    no text layer, a DOCX that is not a zip, a file too large once decompressed)."""

    code: IngestionErrorCode = "invalid_file"

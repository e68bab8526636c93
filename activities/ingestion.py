"""Ingestion activities: parse a file, chunk + embed + index it, commit it, clean up after it, and
expire stores. They take ids and read everything else from the store and blob storage.

Idempotent by construction: the parse cache is keyed by file and parser version; chunk ids are a
hash of (store, file, generation, position), so a retried step upserts what it already wrote; and
every write is conditional on the file's row still being `in_progress` at the ingestion's
generation (`assistants/store/ingestion.py`), so work that lost a race with a cancel or a delete
stops instead of writing.

`index_file` checkpoints: after each group of chunks is written it heartbeats the next position,
and a retry (after a worker crash, or an embedding endpoint's 429/5xx) starts from the last
checkpoint Temporal recorded rather than from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from assistants.files import BlobNotFound, BlobStorage
from assistants.retrieval import (
    Embedder,
    EmbeddingError,
    IngestionError,
    ParsedDocument,
    chunk_document,
    parse_document,
)
from assistants.store import Store
from assistants.store.ingestion import IngestTarget, ParsedText
from workflows.ingestion_shared import (
    EMBEDDING_ERROR,
    NOT_ACTIVE,
    PARSER_ERROR,
    CleanupInput,
    CommitInput,
    ExpiryInput,
    ExpiryState,
    IndexResult,
    IngestStep,
    ParseResult,
)

log = structlog.get_logger(__name__)

# Bump when parsing changes what a file turns into: cached texts of other versions are ignored.
PARSER_VERSION = "1"


def _not_active(step: IngestStep) -> ApplicationError:
    return ApplicationError(
        f"File {step.file_id} is no longer being ingested into {step.vector_store_id} "
        f"(generation {step.generation}).",
        type=NOT_ACTIVE,
        non_retryable=True,
    )


@contextlib.asynccontextmanager
async def _beating(progress: list[Any]) -> AsyncIterator[None]:
    """Heartbeat `progress[0]` (the checkpoint) in the background, at a third of the heartbeat
    timeout, so long CPU steps (parsing a big PDF, embedding a group) never look dead. Every
    heartbeat carries the checkpoint: a heartbeat without details would erase it."""
    timeout = activity.info().heartbeat_timeout
    interval = timeout.total_seconds() / 3 if timeout else 5.0

    async def beat() -> None:
        while True:
            activity.heartbeat(*progress)
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class IngestionActivities:
    def __init__(
        self, store: Store, blobs: BlobStorage, embedder: Embedder, *, checkpoint_chunks: int = 64
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._embedder = embedder
        self._checkpoint = checkpoint_chunks

    async def _target(self, step: IngestStep) -> IngestTarget:
        target = await self._store.ingestion.target(
            step.vector_store_id, step.file_id, step.generation
        )
        if target is None:
            raise _not_active(step)
        return target

    @activity.defn(name="ingest_parse")
    async def parse_file(self, step: IngestStep) -> ParseResult:
        """The file's bytes → its text, kept in the parse cache (parsed once per file)."""
        target = await self._target(step)
        cached = await self._store.ingestion.parsed(step.file_id, PARSER_VERSION)
        if cached is not None:
            return ParseResult(chars=len(cached.text), pages=len(cached.page_starts))
        async with _beating([]):
            try:
                data = await self._blobs.read(target.storage_key)
            except BlobNotFound:
                raise _not_active(step) from None  # the file was deleted meanwhile
            try:
                doc = await asyncio.to_thread(
                    parse_document, data, target.filename, target.content_type
                )
            except IngestionError as error:
                # unsupported_file / invalid_file: the same bytes never parse; not retried.
                raise ApplicationError(error.message, type=error.code, non_retryable=True) from None
            except Exception as error:  # a parser bug on odd input: retried, then invalid_file
                raise ApplicationError(f"{type(error).__name__}", type=PARSER_ERROR) from error
        parsed = ParsedText(doc.text, list(doc.page_starts))
        if not await self._store.ingestion.save_parsed(
            target.project_id, step.file_id, PARSER_VERSION, parsed
        ):
            raise _not_active(step)
        log.info(
            "file parsed",
            vector_store_id=step.vector_store_id,
            file_id=step.file_id,
            chars=len(doc.text),
            pages=len(doc.page_starts),
        )
        return ParseResult(chars=len(doc.text), pages=len(doc.page_starts))

    @activity.defn(name="ingest_index")
    async def index_file(self, step: IngestStep) -> IndexResult:
        """Chunk the parsed text, then embed and upsert the chunks a group at a time, each group
        a checkpoint. Nothing becomes searchable here: the commit does that."""
        target = await self._target(step)
        if self._embedder.model != target.embedding_model:
            raise ApplicationError(
                f"Vector store {step.vector_store_id} is built with the embedding model "
                f"'{target.embedding_model}', but this worker embeds with "
                f"'{self._embedder.model}'.",
                type="server_error",
                non_retryable=True,
            )
        parsed = await self._store.ingestion.parsed(step.file_id, PARSER_VERSION)
        if parsed is None:
            raise _not_active(step)  # the file (and its parsed text) was deleted meanwhile
        doc = ParsedDocument(parsed.text, parsed.page_starts)
        chunks = await asyncio.to_thread(
            chunk_document, doc, target.max_tokens, target.overlap_tokens
        )
        if not chunks:
            raise ApplicationError(
                "The file contains no text to index.", type="invalid_file", non_retryable=True
            )
        details = activity.info().heartbeat_details
        start = int(details[0]) if details else 0
        progress: list[Any] = [start]
        dims = target.embedding_dims
        async with _beating(progress):
            for first in range(start, len(chunks), self._checkpoint):
                group = chunks[first : first + self._checkpoint]
                vectors = await self._embed([chunk.text for chunk in group])
                if dims == 0:  # the store learns its vector size from the first vectors
                    dims = int(vectors.shape[1])
                    await self._store.ingestion.record_dimensions(step.vector_store_id, dims)
                if vectors.shape[1] != dims:
                    raise ApplicationError(
                        f"The embedding model returned vectors of size {vectors.shape[1]}; "
                        f"vector store {step.vector_store_id} holds vectors of size {dims}.",
                        type="server_error",
                        non_retryable=True,
                    )
                rows = [
                    {
                        "project_id": target.project_id,
                        "vector_store_id": step.vector_store_id,
                        "file_id": step.file_id,
                        "generation": step.generation,
                        "position": chunk.position,
                        "text": chunk.text,
                        "tokens": chunk.tokens,
                        "char_start": chunk.char_start,
                        "char_end": chunk.char_end,
                        "page": chunk.page,
                        "embedding": vector,
                    }
                    for chunk, vector in zip(group, vectors, strict=True)
                ]
                if not await self._store.ingestion.insert_chunks(
                    step.vector_store_id, step.file_id, step.generation, rows
                ):
                    raise _not_active(step)
                progress[0] = first + len(group)
                activity.heartbeat(*progress)
        # OpenAI: "the sum of all the parsed chunks from your files and their embeddings".
        usage = sum(len(c.text.encode()) for c in chunks) + len(chunks) * dims * 4
        log.info(
            "file indexed",
            vector_store_id=step.vector_store_id,
            file_id=step.file_id,
            chunks=len(chunks),
            resumed_at=start,
        )
        return IndexResult(chunks=len(chunks), usage_bytes=usage)

    async def _embed(self, texts: list[str]) -> Any:
        try:
            return await self._embedder.embed(texts)
        except EmbeddingError as error:
            delay = error.retry_after_s
            raise ApplicationError(
                error.message,
                type=EMBEDDING_ERROR,
                non_retryable=not error.retryable,
                # Honour the endpoint's Retry-After instead of the policy's backoff.
                next_retry_delay=timedelta(seconds=delay) if delay else None,
            ) from None

    @activity.defn(name="ingest_commit")
    async def commit_file(self, commit: CommitInput) -> bool:
        step = commit.step
        committed = await self._store.ingestion.commit(
            step.vector_store_id, step.file_id, step.generation, commit.usage_bytes
        )
        log.info(
            "file committed" if committed else "file commit lost to a cancel",
            vector_store_id=step.vector_store_id,
            file_id=step.file_id,
            generation=step.generation,
        )
        return committed

    @activity.defn(name="ingest_cleanup")
    async def cleanup_file(self, cleanup: CleanupInput) -> str | None:
        step = cleanup.step
        error = None
        if cleanup.error_code is not None:
            error = {"code": cleanup.error_code, "message": cleanup.error_message or ""}
        status = await self._store.ingestion.cleanup(
            step.vector_store_id, step.file_id, step.generation, error
        )
        log.info(
            "file ingestion stopped",
            vector_store_id=step.vector_store_id,
            file_id=step.file_id,
            generation=step.generation,
            code=cleanup.error_code,
            status=status,
        )
        return status

    @activity.defn(name="vector_store_check_expiry")
    async def check_expiry(self, job: ExpiryInput) -> ExpiryState:
        check = await self._store.vector_stores.check_expiry(job.vector_store_id)
        if check.done and check.expires_at is not None:
            log.info("vector store expired", vector_store_id=job.vector_store_id)
        return ExpiryState(done=check.done, expires_at=check.expires_at)

"""What crosses the ingestion workflows' boundary: names, ids, inputs and results.

Ids and counters only: a file's bytes, its parsed text and its chunks stay in blob storage and in
the store, and activities read them by id, so Temporal history stays small (and free of user
data) whatever the size of the documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INGEST_FILE_WORKFLOW = "IngestFileWorkflow"
FILE_BATCH_WORKFLOW = "FileBatchWorkflow"
EXPIRY_WORKFLOW = "VectorStoreExpiryWorkflow"
# Signal to the expiry workflow: the store's expiry policy changed, read it again.
EXPIRY_CHANGED_SIGNAL = "expiry_changed"

# Error types of the ingestion activities.
NOT_ACTIVE = "ingestion_not_active"  # the row moved on (cancelled, detached, re-attached, gone)
PARSER_ERROR = "parser_error"  # the parser crashed (retried twice, then `invalid_file`)
EMBEDDING_ERROR = "embedding_error"  # the embedding endpoint failed (408/429/5xx are retried)
FILE_ERROR_CODES = ("unsupported_file", "invalid_file", "server_error")


def ingest_workflow_id(vector_store_id: str, file_id: str, generation: int) -> str:
    """One workflow per (store, file, generation): a retried start never ingests twice."""
    return f"ingest-{vector_store_id}-{file_id}-{generation}"


def batch_workflow_id(batch_id: str) -> str:
    return f"ingest-{batch_id}"


def expiry_workflow_id(vector_store_id: str) -> str:
    return f"expire-{vector_store_id}"


@dataclass(frozen=True)
class IngestionOptions:
    """Carried in the input so a worker's settings never make a replay non-deterministic."""

    heartbeat_timeout_s: float = 20.0
    retry_initial_s: float = 1.0
    retry_max_interval_s: float = 30.0
    retry_max_attempts: int = 6
    concurrency: int = 4
    search_attributes: bool = True


@dataclass(frozen=True)
class FileRef:
    file_id: str
    generation: int


@dataclass(frozen=True)
class IngestFileInput:
    project_id: str
    vector_store_id: str
    file_id: str
    generation: int
    options: IngestionOptions = field(default_factory=IngestionOptions)


@dataclass(frozen=True)
class FileBatchInput:
    project_id: str
    vector_store_id: str
    batch_id: str
    files: list[FileRef]
    options: IngestionOptions = field(default_factory=IngestionOptions)


@dataclass(frozen=True)
class IngestStep:
    """The input of every per-file activity."""

    vector_store_id: str
    file_id: str
    generation: int


@dataclass(frozen=True)
class ParseResult:
    chars: int
    pages: int


@dataclass(frozen=True)
class IndexResult:
    chunks: int
    usage_bytes: int


@dataclass(frozen=True)
class CommitInput:
    step: IngestStep
    usage_bytes: int


@dataclass(frozen=True)
class CleanupInput:
    step: IngestStep
    error_code: str | None = None  # None: cancelled
    error_message: str | None = None


@dataclass(frozen=True)
class ExpiryInput:
    vector_store_id: str


@dataclass(frozen=True)
class ExpiryState:
    done: bool
    expires_at: int | None = None

"""The relational schema, as SQLAlchemy Core tables.

Every object table has `seq` (an autoincrement integer) besides its public `id`: lists are ordered
and paginated by `seq`, which is exact where `created_at` (whole seconds, as in OpenAI's objects)
would tie. Every object row carries `project_id`; every query filters on it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from assistants.store import search_schema

metadata = MetaData()

Seq = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER PKs.

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("hint", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

assistants = Table(
    "assistants",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("name", Text),
    Column("description", Text),
    Column("model", String(256), nullable=False),
    Column("instructions", Text),
    Column("tools", JSON, nullable=False),
    Column("tool_resources", JSON),
    Column("metadata", JSON, nullable=False),
    Column("temperature", Float),
    Column("top_p", Float),
    Column("response_format", JSON),
    Index("ix_assistants_project", "project_id", "seq"),
)

threads = Table(
    "threads",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("tool_resources", JSON),
    # The thread lock: the id of the run that holds it, taken by a conditional update.
    Column("active_run_id", String(64)),
)

messages = Table(
    "messages",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("thread_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", JSON, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("assistant_id", String(64)),
    Column("run_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("completed_at", BigInteger),
    Column("incomplete_at", BigInteger),
    Column("incomplete_details", JSON),
    Index("ix_messages_thread", "thread_id", "seq"),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("thread_id", String(64), nullable=False),
    Column("assistant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("model", String(256), nullable=False),
    Column("instructions", Text, nullable=False),
    Column("additional_instructions", Text),
    Column("tools", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("temperature", Float),
    Column("top_p", Float),
    Column("max_prompt_tokens", Integer),
    Column("max_completion_tokens", Integer),
    Column("truncation_strategy", JSON, nullable=False),
    Column("response_format", JSON),
    Column("tool_choice", JSON),
    Column("parallel_tool_calls", Boolean, nullable=False),
    Column("required_action", JSON),
    Column("last_error", JSON),
    Column("incomplete_details", JSON),
    Column("usage", JSON),
    Column("started_at", BigInteger),
    Column("expires_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("completed_at", BigInteger),
    # Last sequence number used in this run's event log; bumping it serialises appends.
    Column("event_seq", Integer, nullable=False, default=0),
    # The cancel outbox (see `assistants.launcher`): `POST …/cancel` sets `cancel_requested_at`
    # in the same transaction as `cancelling`; `cancel_delivered_at` is set once Temporal has
    # acknowledged the `cancel` signal. A `cancelling` run without it is retried by the sweeper.
    Column("cancel_requested_at", BigInteger),
    Column("cancel_delivered_at", BigInteger),
    Index("ix_runs_thread", "thread_id", "seq"),
    Index("ix_runs_status", "status"),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("thread_id", String(64), nullable=False),
    Column("assistant_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("step_details", JSON, nullable=False),
    Column("last_error", JSON),
    Column("usage", JSON),
    Column("metadata", JSON),
    Column("completed_at", BigInteger),
    Column("cancelled_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("expired_at", BigInteger),
    Index("ix_steps_run", "run_id", "seq"),
)

# Tool outputs submitted through `submit_tool_outputs`, waiting for the workflow's update handler
# to apply them to the run's step. Kept out of Temporal history: the update carries only this id,
# which is derived from the step (one submission per tool step; see `assistants.store.tool_calls`).
# `applied_at` is set when the workflow applied it; the row is deleted once a request has answered
# it with success, so a row that is applied but still here belongs to a request that failed
# (503, crash) and whose retry must answer success.
tool_output_submissions = Table(
    "tool_output_submissions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("outputs", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("step_id", String(64)),
    Column("applied_at", BigInteger),
)

# The durable per-run event log: one row per SSE event, in order. `key` makes appends idempotent,
# so an activity retried after a crash never duplicates an event.
run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("key", String(200), nullable=False),
    Column("event", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_ms", BigInteger),  # append time in ms, for the event-log lag metric
    UniqueConstraint("run_id", "key", name="uq_run_events_key"),
)

# Completion webhooks (an extension of the Assistants API): endpoints a project registers to get a
# signed POST when one of its runs reaches a terminal status or `requires_action`. `events` is the
# list of subscribed event names; an empty list means all of them.
webhooks = Table(
    "webhooks",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("events", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_webhooks_project", "project_id", "seq"),
)

# Uploaded files (the Files API). The bytes live in blob storage under `storage_key`; the row holds
# what the API returns plus the digest. `status` is always "processed" (uploads are stored whole
# before the row exists), which is what the SDK's `wait_for_processing` waits for.
files = Table(
    "files",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("storage_key", String(512), nullable=False),
    Column("expires_at", BigInteger),
    Column("status", String(16), nullable=False),
    Index("ix_files_project", "project_id", "seq"),
)


# Vector-store chunks (search): one row per chunk of a file in a store, with its embedding.
# `id` is deterministic (store, file, generation, position), so a retried ingestion activity
# upserts instead of duplicating. A chunk is searchable only while a `vector_store_files` row with
# the same (vector_store_id, file_id, generation) is `completed` (the visibility rule), so chunks
# can be written before the file commits. `seq` never repeats (AUTOINCREMENT on SQLite): it is the
# FTS5 rowid and the key of the in-memory vector cache. `embedding` is float32 bytes, or pgvector
# `vector` on PostgreSQL where the extension exists; the lexical indexes (FTS5 table, tsvector +
# GIN) are dialect-specific DDL attached in `store/search_schema.py`.
vector_store_chunks = Table(
    "vector_store_chunks",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("file_id", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("char_start", Integer, nullable=False),
    Column("char_end", Integer, nullable=False),
    Column("page", Integer),
    Column("dims", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Index("ix_vector_store_chunks_file", "vector_store_id", "file_id", "generation", "position"),
    sqlite_autoincrement=True,
)
search_schema.attach(vector_store_chunks)

# Per-store chunk bookkeeping: `version` grows with every insert/delete of the store's chunks, so
# each process's in-memory vector cache knows, from the database, when it is stale.
vector_store_chunk_stats = Table(
    "vector_store_chunk_stats",
    metadata,
    Column("vector_store_id", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("chunks", BigInteger, nullable=False),
)

# Vector stores. `status`, `file_counts` and `usage_bytes` are not stored: they are derived from
# `vector_store_files` on every read (GROUP BY), so the SDK's pollers never see a count that
# disagrees with the files. `embedding_model`/`embedding_dims` pin the model the store is built
# (and searched) with. `expired` is set once, by the store's durable expiry workflow;
# `expiry_scheduled` is false until that workflow has been (re)started for the current policy, so
# the API's sweeper can start it if Temporal was unreachable when the policy was set.
vector_stores = Table(
    "vector_stores",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("name", Text),
    Column("metadata", JSON, nullable=False),
    Column("expires_after", JSON),
    Column("expires_after_s", BigInteger),  # the policy in seconds (days times the day's length)
    Column("expires_at", BigInteger),
    Column("last_active_at", BigInteger),
    Column("embedding_model", String(256), nullable=False),
    Column("embedding_dims", Integer, nullable=False),
    Column("expired", Boolean, nullable=False, default=False),
    Column("expiry_scheduled", Boolean, nullable=False, default=True),
    Index("ix_vector_stores_project", "project_id", "seq"),
)

# A file in a vector store (the API's `vector_store.file`, whose id is the file's id). Each
# (re)attachment bumps `generation`; ingestion works on one generation, and every write it makes is
# conditional on the row still being `in_progress` at that generation, so a cancel, a detach or a
# newer attachment wins over in-flight work. `workflow_started` is false until the ingestion
# workflow (the file's own, or its batch's) is known to exist: the API's sweeper starts the rest.
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("project_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("file_id", String(64), nullable=False),
    Column("batch_id", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_error", JSON),
    Column("chunking_strategy", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("usage_bytes", BigInteger, nullable=False, default=0),
    Column("generation", Integer, nullable=False, default=1),
    Column("workflow_started", Boolean, nullable=False, default=False),
    UniqueConstraint("vector_store_id", "file_id", name="uq_vector_store_files"),
    Index("ix_vector_store_files_store", "vector_store_id", "seq"),
    Index("ix_vector_store_files_batch", "batch_id", "seq"),
    Index("ix_vector_store_files_file", "file_id"),
    Index("ix_vector_store_files_status", "status", "workflow_started"),
)

# File batches. Only `cancelled` (and `failed`) are stored as such; `in_progress` vs `completed` is
# derived from the batch's files like the counts.
vector_store_file_batches = Table(
    "vector_store_file_batches",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("workflow_started", Boolean, nullable=False, default=False),
    Index("ix_vector_store_file_batches_store", "vector_store_id", "seq"),
)

# The text a file parsed to (parse cache and `GET …/files/{id}/content`), keyed by file and parser
# version: a file in several stores is parsed once, and the bytes never pass through Temporal.
parsed_files = Table(
    "parsed_files",
    metadata,
    Column("file_id", String(64), primary_key=True),
    Column("parser_version", String(32), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("page_starts", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

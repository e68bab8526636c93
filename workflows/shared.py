"""What crosses the workflow boundary: inputs, results and the activity names' payloads.

Only ids, statuses, counters and timeouts live here — never message text — so Temporal history
stays small and free of conversation data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKFLOW_NAME = "RunWorkflow"
CANCEL_SIGNAL = "cancel"
# Error type of an activity that found its run no longer `in_progress` (a cancel is under way).
RUN_NOT_ACTIVE = "run_not_active"


@dataclass(frozen=True)
class RunTimeouts:
    """Carried in the input so a worker's settings never make a replay non-deterministic."""

    model_call_s: float = 120.0
    model_heartbeat_s: float = 15.0
    retry_initial_s: float = 1.0
    retry_max_interval_s: float = 30.0
    retry_max_attempts: int = 6


@dataclass(frozen=True)
class RunInput:
    run_id: str
    thread_id: str
    assistant_id: str
    project_id: str
    model: str
    expires_at: int  # epoch seconds; a durable timer expires the run then
    timeouts: RunTimeouts = field(default_factory=RunTimeouts)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def as_object(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class GenerateInput:
    run_id: str
    step_id: str
    message_id: str
    # Tokens already spent by earlier model calls of this run: max_*_tokens apply to the run.
    prompt_tokens_used: int = 0
    completion_tokens_used: int = 0


@dataclass(frozen=True)
class GenerateResult:
    # "stop" | "length" (max_completion_tokens hit) | "prompt_limit" (max_prompt_tokens hit)
    finish: str
    usage: Usage


@dataclass(frozen=True)
class FinishInput:
    run_id: str
    status: str
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None
    incomplete_reason: str | None = None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None

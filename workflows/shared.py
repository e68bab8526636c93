"""What crosses the workflow boundary: inputs, results and the activity names' payloads.

Ids, statuses, counters and timeouts: conversation text, tool arguments and tool outputs stay in
the store, so Temporal history stays small and free of conversation data. The one exception is a
run started through Temporal (`RunRequest.messages` in, `RunResult.messages` out), which is why
payload encryption exists (`assistants/codec.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKFLOW_NAME = "RunWorkflow"
CANCEL_SIGNAL = "cancel"
SUBMIT_TOOL_OUTPUTS_UPDATE = "submit_tool_outputs"
# Error type of an activity that found its run no longer `in_progress` (a cancel is under way).
RUN_NOT_ACTIVE = "run_not_active"
# Error type of a local activity (a model round, a search, a `local=True` tool) stopped because
# its worker shuts down (after the grace period).
WORKER_STOPPING = "worker_stopping"
# A local activity's stops: not the call's failure, but what `RunWorkflow._stopped` handles.
LOCAL_STOPS = (RUN_NOT_ACTIVE, WORKER_STOPPING)


@dataclass(frozen=True)
class RunTimeouts:
    """Carried in the input so a worker's settings never make a replay non-deterministic."""

    model_call_s: float = 120.0
    model_heartbeat_s: float = 15.0
    retry_initial_s: float = 1.0
    retry_max_interval_s: float = 30.0
    retry_max_attempts: int = 6
    max_model_rounds: int = 32
    # code_interpreter: the shared sandbox task queue and the limit of one execution.
    sandbox_task_queue: str = "code-interpreter"
    code_execution_s: float = 60.0


@dataclass(frozen=True)
class MessageInput:
    """A message added to the thread by a service-started run (`assistants.trigger`)."""

    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class RunRequest:
    """A run started through Temporal rather than HTTP. The workflow's first activity records it
    in the store (thread, messages, run) exactly as the HTTP API would."""

    project_id: str  # the project's id or name (`default`)
    assistant_id: str
    thread_id: str | None = None  # None: a new thread
    messages: list[MessageInput] = field(default_factory=list)
    model: str | None = None
    instructions: str | None = None
    additional_instructions: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    return_messages: bool = True  # the result carries the texts of the run's messages


@dataclass(frozen=True)
class RunInput:
    run_id: str
    thread_id: str
    assistant_id: str
    project_id: str
    model: str
    expires_at: int  # epoch seconds; a durable timer expires the run then
    timeouts: RunTimeouts = field(default_factory=RunTimeouts)
    # Set for runs started through Temporal; then the fields above are filled in by recording it.
    request: RunRequest | None = None
    # Keep the RunStatus/AssistantId/… search attributes current (the namespace must have them).
    search_attributes: bool = True
    request_id: str | None = None  # the HTTP request that created the run, for logs


@dataclass(frozen=True)
class RecordRunInput:
    run_id: str
    request: RunRequest


@dataclass(frozen=True)
class RecordedRun:
    thread_id: str
    model: str
    expires_at: int
    timeouts: RunTimeouts
    project_id: str = ""  # the resolved id (the request may name the project)


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
class ToolPolicy:
    """How the worker runs a registered function tool (from its `@function_tool` options)."""

    timeout_s: float = 60.0
    max_attempts: int = 3
    heartbeat_timeout_s: float = 20.0
    on_error: str = "message"  # "message": the error becomes the output; "fail": the run fails
    # A local activity, run inside the workflow task that scheduled it: no round trips to the
    # Temporal server for the call (see `@function_tool(local=True)`).
    local: bool = False


@dataclass(frozen=True)
class ToolCallRef:
    """One tool call of a model round. `policy` is set when the worker runs the function itself
    (it is registered); otherwise the call goes to the client through `requires_action`. The
    arguments stay in the store."""

    call_id: str
    name: str
    policy: ToolPolicy | None = None
    # "code_interpreter": the call runs in the thread's sandbox session (never the client's).
    kind: str = "function"


@dataclass(frozen=True)
class GenerateInput:
    run_id: str
    step_id: str
    message_id: str
    tool_step_id: str = ""
    request_id: str | None = None  # for logs: the HTTP request that created the run
    round_index: int = 0  # 0 for the run's first model call, +1 per tool round
    # Tokens already spent by earlier model calls of this run: max_*_tokens apply to the run.
    prompt_tokens_used: int = 0
    completion_tokens_used: int = 0
    # The tool step of the round before, answered by the worker: the round completes it in its
    # first commit (since the `tool-step-in-next-round` patch; before it, `complete_tool_step`).
    completes_step_id: str | None = None


# How a model round that called no tools ends the run, by `GenerateResult.finish`: the terminal
# status and its `incomplete_details.reason`. The model activity ends the run this way in the
# answer's commit, and the workflow reaches the same outcome from the result.
RUN_ENDS: dict[str, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "length": ("incomplete", "max_completion_tokens"),
    "prompt_limit": ("incomplete", "max_prompt_tokens"),
}

# `GenerateResult.finish` when file_search's thread store still ingests attached files: the model
# was not called; the workflow waits a moment and asks again.
FILES_PENDING = "files_pending"


@dataclass(frozen=True)
class GenerateResult:
    # "stop" | "length" (max_completion_tokens hit) | "prompt_limit" (max_prompt_tokens hit)
    # | "tool_calls" (the calls are in `tool_calls` and on the step `tool_step_id`)
    finish: str
    usage: Usage
    tool_calls: list[ToolCallRef] = field(default_factory=list)
    # The answer's commit ended the run: its terminal status and the webhooks to notify, so the
    # workflow needs no `finish_run` (None: it did not, or a result recorded before this field).
    ended: FinishResult | None = None


@dataclass(frozen=True)
class ToolCallInput:
    run_id: str
    step_id: str
    call_id: str
    name: str
    request_id: str | None = None


@dataclass(frozen=True)
class ToolOutputInput:
    """The final error of a registered tool, recorded as its output for the model."""

    run_id: str
    step_id: str
    call_id: str
    output: str


@dataclass(frozen=True)
class RequireActionInput:
    run_id: str
    step_id: str
    call_ids: list[str]
    project_id: str = ""


@dataclass(frozen=True)
class RequireActionResult:
    waiting: bool  # False: a cancellation got there first
    webhooks: list[str] = field(default_factory=list)  # to notify of `requires_action`


@dataclass(frozen=True)
class ToolOutputsSubmission:
    """The `submit_tool_outputs` update. The outputs themselves wait in the store under
    `submission_id`; only the call ids cross Temporal history."""

    submission_id: str
    call_ids: list[str]


@dataclass(frozen=True)
class ApplyOutputsInput:
    run_id: str
    step_id: str
    submission_id: str


@dataclass(frozen=True)
class CompleteStepInput:
    run_id: str
    step_id: str


@dataclass(frozen=True)
class FinishInput:
    run_id: str
    status: str
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None
    incomplete_reason: str | None = None
    return_messages: bool = False
    project_id: str = ""


@dataclass(frozen=True)
class FinishResult:
    # The texts of the run's assistant messages (when `return_messages`).
    messages: list[str] = field(default_factory=list)
    # The project's webhooks subscribed to the terminal event, to notify next.
    webhooks: list[str] = field(default_factory=list)
    # The run's terminal status in the store. The model activity ends a run with its answer,
    # so when the answer raced the expiry timer or a cancel, the store's status is the truth.
    # (Empty in histories recorded before this field existed.)
    status: str = ""


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None
    thread_id: str = ""
    # The texts of the assistant messages the run wrote (runs started with `return_messages`).
    messages: list[str] = field(default_factory=list)


# --- completion webhooks ------------------------------------------------------------------------

# The events a project's webhooks can subscribe to (an empty subscription list means all of them).
WEBHOOK_EVENTS = (
    "thread.run.completed",
    "thread.run.incomplete",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.requires_action",
)


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of `event` about `run_id` to one webhook. `delivery_id` is made in the workflow
    (deterministically) and stays the same across retries, so receivers can deduplicate on it."""

    webhook_id: str
    run_id: str
    event: str
    delivery_id: str

"""What crosses Temporal for code_interpreter: thread, run, step and call ids, task-queue names
and statuses. The code, its output and the files stay in the store and blob storage."""

from __future__ import annotations

from dataclasses import dataclass

SESSION_WORKFLOW = "CodeSessionWorkflow"
CLAIM_UPDATE = "claim"
LOST_SIGNAL = "lost"


def session_workflow_id(thread_id: str) -> str:
    return f"ci-session-{thread_id}"


@dataclass(frozen=True)
class SessionParams:
    """The session workflow's settings, fixed at its start (so a replay never reads settings)."""

    thread_id: str
    idle_s: float
    max_lifetime_s: float
    # Carried over by continue-as-new.
    host_queue: str | None = None
    started_at: float = 0.0
    last_used: float = 0.0


@dataclass(frozen=True)
class ClaimInput:
    """Which host runs the thread's session: the existing one, or `candidate_queue` (the host
    queue of the sandbox worker asking)."""

    thread_id: str
    candidate_queue: str = ""


@dataclass(frozen=True)
class ExecuteInput:
    run_id: str
    step_id: str
    call_id: str
    thread_id: str
    timeout_s: float
    request_id: str | None = None


@dataclass(frozen=True)
class ExecuteResult:
    status: str  # ok | error | timeout | lost (the sandbox's ExecutionStatus), or "recorded"


@dataclass(frozen=True)
class LostInput:
    """A call whose host stopped answering: its logs say so (nothing is re-executed)."""

    run_id: str
    step_id: str
    call_id: str
    message: str


@dataclass(frozen=True)
class CloseInput:
    thread_id: str

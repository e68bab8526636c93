"""The sandbox protocol: what code_interpreter needs from wherever code runs.

A backend makes sessions; a session is one stateful Python (a Jupyter kernel) with a private
`/mnt/data`. The run machinery (Temporal activities, the model-facing `python` tool) talks only to
these types, so a stronger backend (Kubernetes pods under gVisor or Kata, a Firecracker service)
can replace the local one without touching it. Everything here is plain data or a Protocol.

Rules every backend keeps (the security tests hold the local one to them):
- code runs only inside a sandbox; when none can be made, `start_session` raises
  `SandboxUnavailable` with the reason, never falls back to running code unsandboxed;
- an execution is never repeated by the backend (code is not idempotent);
- a sandbox that dies (out of memory, crash, killed) is reported as `status="lost"` as soon as it
  dies, not when a client-side timeout fires;
- outputs are bounded (text, images, files read back), whatever the code prints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

DATA_DIR = "/mnt/data"

ExecutionStatus = Literal["ok", "error", "timeout", "lost"]
OutputKind = Literal["stdout", "stderr", "result", "display", "error", "image", "notice"]


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made on this host (reason in the message); code must not run."""


class SandboxError(RuntimeError):
    """A session operation failed (the session is gone, a protocol error)."""


class SandboxFileError(ValueError):
    """A /mnt/data path was refused (`..`, absolute, a symlink, not a regular file, too big)."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one session may use. Backends enforce what they can and document the rest."""

    memory_mb: int = 1024
    cpu_time_s: int = 3600
    cpu_cores: float = 1.0
    max_processes: int = 128
    max_file_mb: int = 512
    data_mb: int = 1024
    tmp_mb: int = 256
    max_output_bytes: int = 65_536
    max_images: int = 10
    max_image_bytes: int = 10 * 1024 * 1024
    interrupt_grace_s: float = 5.0
    start_timeout_s: float = 30.0
    session_max_lifetime_s: int = 4 * 3600


@dataclass(frozen=True)
class OutputChunk:
    """One piece of an execution's output, delivered while the code runs.

    `text` pieces (every kind but `image`) concatenate, in order, to the result's `logs`
    exactly, so a streaming client that appends them ends with what the step stores. `image`
    carries PNG bytes in `image` and no text.
    """

    kind: OutputKind
    text: str = ""
    image: bytes | None = None


OnOutput = Callable[[OutputChunk], Awaitable[None]]


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one `execute`.

    - `ok`: ran to the end. `error`: raised; `error` holds the traceback (also in `logs`).
    - `timeout`: the wall-clock limit interrupted it; the kernel and its variables live on.
    - `lost`: the sandbox is gone (out of memory, crashed, killed after not stopping at the
      timeout). `error` says why; the session is dead and a new one must be started.
    `logs` is what a Jupyter cell would show as text (stdout and stderr as they came, the value
    of the last expression, tracebacks, notes about truncation, timeout or loss), capped.
    """

    status: ExecutionStatus
    logs: str
    images: list[bytes] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True)
class SandboxFile:
    """A regular file under /mnt/data: `path` is relative to it (`out/chart.png`)."""

    path: str
    size: int
    mtime_ns: int


@runtime_checkable
class SandboxSession(Protocol):
    """One live, stateful Python. Not safe for concurrent use: one call at a time."""

    @property
    def session_id(self) -> str: ...

    @property
    def alive(self) -> bool:
        """False once the sandbox died or was closed; every later `execute` is `lost`."""
        ...

    async def execute(
        self, code: str, *, timeout_s: float, on_output: OnOutput | None = None
    ) -> ExecutionResult:
        """Run `code` as one notebook cell; never raises for anything the code does.

        Cancelling the awaiting task (or an exception from `on_output`) interrupts the code
        (best effort) and propagates.
        """
        ...

    async def interrupt(self) -> None:
        """Ask the running code to stop (KeyboardInterrupt), as Jupyter's interrupt does."""
        ...

    async def put_file(self, path: str, data: bytes) -> None:
        """Place a file at /mnt/data/<path> (parent folders made), replacing what is there."""
        ...

    async def list_files(self, *, max_files: int = 1000) -> list[SandboxFile]:
        """Regular files under /mnt/data, found by a walk that never follows a symlink;
        symlinks, FIFOs, sockets and devices are skipped. At most `max_files`, sorted by path."""
        ...

    async def read_file(self, path: str, *, max_bytes: int) -> bytes:
        """The bytes of the regular file /mnt/data/<path>; `SandboxFileError` for a bad path,
        a symlink anywhere on the way, anything but a regular file, or more than `max_bytes`."""
        ...

    async def close(self) -> None:
        """Kill the sandbox and everything in it and free its resources. Idempotent."""
        ...


@runtime_checkable
class SandboxBackend(Protocol):
    """Makes sessions. One per worker process; safe to share between tasks."""

    name: str

    async def check(self) -> None:
        """Raise `SandboxUnavailable` (with the reason) unless sessions can be made here."""
        ...

    async def start_session(self, session_id: str) -> SandboxSession:
        """A new sandbox with a running kernel and an empty /mnt/data.

        `session_id` names it in logs (e.g. the thread id). Raises `SandboxUnavailable`.
        """
        ...

    async def aclose(self) -> None:
        """Close every session this backend started."""
        ...

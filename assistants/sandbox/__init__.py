"""Sandboxes for code_interpreter: where the model's Python runs, and nothing else does.

The protocol (base.py)
----------------------
`SandboxBackend.start_session(session_id) -> SandboxSession` gives one stateful Python (a
Jupyter kernel: variables and imports survive between calls, the last expression is displayed)
with a private, initially empty `/mnt/data`. A session offers:

- `execute(code, *, timeout_s, on_output=None) -> ExecutionResult` — one notebook cell.
  `status` is `ok`, `error` (traceback in `error` and in `logs`), `timeout` (interrupted at
  `timeout_s`, variables kept) or `lost` (the sandbox died: out of memory, crash, CPU or
  lifetime limit, or killed because it ignored the interrupt; `error` says which, `logs` ends
  with a `[session lost: …]` line). `logs` is the cell's text (stdout/stderr, results,
  traceback, notes), capped; `images` the PNGs it displayed, capped. `on_output` receives
  `OutputChunk`s while the code runs; their texts concatenate to exactly `logs`. It never
  raises for what the code does, and never runs anything twice.
- `put_file(path, data)`, `list_files()`, `read_file(path, max_bytes=…)` — /mnt/data, by paths
  relative to it (or `/mnt/data/…`). Only regular files are listed or read; symlinks, `..`,
  FIFOs and devices are refused (datadir.py).
- `interrupt()`, `close()`, `alive`.

If no sandbox can be made, `check()` / `start_session()` raise `SandboxUnavailable` whose
message starts with "code interpreter unavailable:" and says why. Code never runs unsandboxed.

Wiring it into runs (what the caller is expected to do)
-------------------------------------------------------
- Sessions live in the worker process that started them (a kernel is a local process), so every
  call for a session must reach that process: start it in an activity on the shared sandbox
  task queue, return a host-specific task queue name, and schedule every later activity of the
  session there (with a short schedule-to-start timeout to notice a dead host). Keep a
  `{session key: SandboxSession}` map in that worker. Call `start_session` from the event loop
  (async activities), since the session's sockets and watchers belong to that loop.
- `execute` is not idempotent: run it with `maximum_attempts=1`; a retry would re-run code.
  Heartbeat from `on_output` (and on a timer) so a cancel reaches it; cancelling the awaiting
  task interrupts the code. A `lost` result is final for that session: report it to the model
  and start a new session for the next call (then put the thread's files back).
- Files: `put_file` what the thread and assistant attach before executing; after each execute,
  `list_files()` and compare `(size, mtime_ns)` with what was seen before to find files to
  upload as `assistants_output` (`read_file` with the per-file cap).
- The idle timer and maximum lifetime belong to the caller (a durable timer that calls `close`);
  `session_max_lifetime_s` is only the backend's backstop.

Backends
--------
- `local` (local.py, jail.py): an IPython kernel inside nsjail on the worker's host; fine for
  `make dev`, CI and a single trusted team. It shares the host's Linux kernel, so for untrusted
  multi-tenant use a backend with its own kernel (Kubernetes pods under gVisor or Kata, a
  Firecracker service such as E2B) is recommended: implement the two Protocols in base.py, e.g.
  with a small agent in the pod that speaks this protocol, and select it in factory.py.
"""

from assistants.sandbox.base import (
    DATA_DIR,
    ExecutionResult,
    ExecutionStatus,
    OnOutput,
    OutputChunk,
    SandboxBackend,
    SandboxError,
    SandboxFile,
    SandboxFileError,
    SandboxLimits,
    SandboxSession,
    SandboxUnavailable,
)
from assistants.sandbox.factory import make_sandbox_backend, sandbox_limits
from assistants.sandbox.local import LocalSandboxBackend, LocalSandboxConfig, LocalSandboxSession

__all__ = [
    "DATA_DIR",
    "ExecutionResult",
    "ExecutionStatus",
    "LocalSandboxBackend",
    "LocalSandboxConfig",
    "LocalSandboxSession",
    "OnOutput",
    "OutputChunk",
    "SandboxBackend",
    "SandboxError",
    "SandboxFile",
    "SandboxFileError",
    "SandboxLimits",
    "SandboxSession",
    "SandboxUnavailable",
    "make_sandbox_backend",
    "sandbox_limits",
]

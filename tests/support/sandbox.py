"""Helpers for tests that start real sandboxes (assistants/sandbox): the sandbox Python that
`make sandbox` builds, small limits so attacks hit them fast, and host-side process checks."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from assistants.sandbox.base import SandboxLimits
from assistants.sandbox.local import LocalSandboxConfig, LocalSandboxSession

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_PYTHON = ROOT / ".venv-sandbox" / "bin" / "python"

# Small enough that every limit is reached in well under a second, big enough for pandas and
# matplotlib to work.
TEST_LIMITS = SandboxLimits(
    memory_mb=768,
    max_processes=64,
    max_file_mb=16,
    data_mb=48,
    tmp_mb=32,
    max_output_bytes=65_536,
    max_images=3,
    interrupt_grace_s=2.0,
)


def sandbox_config(**limits: Any) -> LocalSandboxConfig:
    assert SANDBOX_PYTHON.exists(), "the sandbox Python is missing: run `make sandbox`"
    return LocalSandboxConfig(python=SANDBOX_PYTHON, limits=replace(TEST_LIMITS, **limits))


def pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def processes_in_namespace(namespace: str) -> list[int]:
    """Host pids of every process still in that pid namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == namespace:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kernel_pid(session: LocalSandboxSession) -> int:
    assert session.kernel_pid is not None
    return session.kernel_pid

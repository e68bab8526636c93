"""Builds the configured sandbox backend from the settings (the only place that reads them)."""

from __future__ import annotations

from assistants.config import Settings
from assistants.sandbox.base import SandboxBackend, SandboxLimits
from assistants.sandbox.local import LocalSandboxBackend, LocalSandboxConfig


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        memory_mb=settings.sandbox_memory_mb,
        cpu_time_s=settings.sandbox_cpu_time_s,
        cpu_cores=settings.sandbox_cpu_cores,
        max_processes=settings.sandbox_max_processes,
        max_file_mb=settings.sandbox_max_file_mb,
        data_mb=settings.sandbox_data_mb,
        tmp_mb=settings.sandbox_tmp_mb,
        max_output_bytes=settings.sandbox_max_output_bytes,
        max_images=settings.sandbox_max_images,
        max_image_bytes=settings.sandbox_max_image_bytes,
        interrupt_grace_s=settings.sandbox_interrupt_grace_s,
        start_timeout_s=settings.sandbox_start_timeout_s,
        session_max_lifetime_s=settings.sandbox_session_max_lifetime_s,
    )


def local_config(settings: Settings) -> LocalSandboxConfig:
    return LocalSandboxConfig(
        python=settings.sandbox_python,
        nsjail=settings.sandbox_nsjail,
        runtime_dir=settings.sandbox_runtime_dir,
        limits=sandbox_limits(settings),
        cgroups=settings.sandbox_cgroups,
        uid_base=settings.sandbox_uid_base,
    )


def make_sandbox_backend(settings: Settings) -> SandboxBackend:
    """The backend named by ASSISTANTS_SANDBOX_BACKEND. Cheap: nothing is probed until the
    first `check()` or `start_session()`."""
    if settings.sandbox_backend == "local":
        return LocalSandboxBackend(local_config(settings))
    raise ValueError(f"unknown sandbox backend {settings.sandbox_backend!r}")

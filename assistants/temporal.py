"""Connecting to Temporal, and the run inputs derived from settings."""

from __future__ import annotations

import asyncio

import structlog
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import Runtime

from assistants.codec import data_converter
from assistants.config import Settings
from workflows.shared import RunTimeouts

log = structlog.get_logger(__name__)


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    attempts: int = 60,
    delay_s: float = 1.0,
) -> Client:
    """Connect, retrying for a while: in `dev` and in compose set-ups Temporal may still be
    starting when we do."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                # With keys configured, every payload this client and its workers write to
                # Temporal (inputs, results, signals, updates) is AES-GCM encrypted.
                data_converter=data_converter(settings.payload_encryption_keys),
                runtime=runtime,
            )
        except RuntimeError as error:  # the core SDK reports connection failures as RuntimeError
            last = error
            await asyncio.sleep(delay_s)
    raise RuntimeError(f"could not connect to Temporal at {settings.temporal_address}: {last}")


def run_timeouts(settings: Settings) -> RunTimeouts:
    return RunTimeouts(
        model_call_s=settings.model_timeout_s + 30,
        model_heartbeat_s=settings.model_heartbeat_timeout_s,
        retry_initial_s=settings.model_retry_initial_interval_s,
        retry_max_interval_s=settings.model_retry_max_interval_s,
        retry_max_attempts=settings.model_retry_max_attempts,
        max_model_rounds=settings.max_model_rounds,
        sandbox_task_queue=settings.resolved_sandbox_task_queue,
        code_execution_s=settings.sandbox_execution_timeout_s,
    )


def client_metric_meter(client: Client) -> MetricMeter:
    """The meter of the runtime the client uses (no-op unless that runtime exports metrics)."""
    runtime = client.service_client.config.runtime or Runtime.default()
    return runtime.metric_meter

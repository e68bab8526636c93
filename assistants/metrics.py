"""Prometheus metrics: the Temporal SDK's own, plus the server's, on one endpoint per process.

Both go through Temporal's runtime telemetry: a process that sets a metrics port gets a `Runtime`
with a Prometheus exporter, its Temporal client uses it (so SDK metrics such as
`temporal_workflow_completed` and `temporal_activity_execution_latency` appear), and `Metrics`
creates our instruments on the same meter. Without a port, everything records into a no-op meter.

Ours:
- `assistants_runs_finished{status}`: runs by terminal status;
- `assistants_model_call_latency` (ms) and `assistants_model_tokens{kind=prompt|completion}`;
- `assistants_tool_call_latency{tool,outcome}` (ms): registered function tools;
- `assistants_event_log_lag` (ms): from an event's append to its delivery on a live SSE stream.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


def prometheus_runtime(host: str, port: int | None) -> Runtime | None:
    """A Temporal runtime exporting Prometheus metrics on `host:port` (`/metrics`)."""
    if port is None:
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}"))
    )


class Metrics:
    def __init__(self, meter: MetricMeter | None = None) -> None:
        meter = meter or MetricMeter.noop
        self.runs_finished = meter.create_counter(
            "assistants_runs_finished", "Runs that reached a terminal status, by status."
        )
        self.model_latency = meter.create_histogram_timedelta(
            "assistants_model_call_latency", "Duration of one model call (one attempt).", "ms"
        )
        self.model_tokens = meter.create_counter(
            "assistants_model_tokens", "Tokens used by model calls, by kind."
        )
        self.tool_latency = meter.create_histogram_timedelta(
            "assistants_tool_call_latency",
            "Duration of one registered function tool call (one attempt).",
            "ms",
        )
        self.event_lag = meter.create_histogram_timedelta(
            "assistants_event_log_lag",
            "Time from an event's append to its delivery on a live stream.",
            "ms",
        )

    def run_finished(self, status: str) -> None:
        self.runs_finished.add(1, {"status": status})

    def model_call(self, model: str, duration: timedelta, prompt: int, completion: int) -> None:
        self.model_latency.record(duration, {"model": model})
        self.model_tokens.add(prompt, {"model": model, "kind": "prompt"})
        self.model_tokens.add(completion, {"model": model, "kind": "completion"})

    def tool_call(self, tool: str, outcome: str, duration: timedelta) -> None:
        self.tool_latency.record(duration, {"tool": tool, "outcome": outcome})

    def event_delivered(self, lag: timedelta) -> None:
        self.event_lag.record(lag)

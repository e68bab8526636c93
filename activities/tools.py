"""Running a registered function tool as its own activity.

Each call of a registered tool is one activity with the tool's own timeout and retry policy, so a
flaky tool is retried with backoff and a worker that dies mid-call is noticed through heartbeats
and the call re-run on another worker. A tool registered with `local=True` runs as a local
activity instead (no round trips to the Temporal server): it cannot heartbeat, so it watches its
run's status (a cancelled run stops it) and a dead worker's call runs again when another worker
takes over the workflow task. That makes execution at-least-once: a tool with side
effects should be idempotent, for example keyed by the call id
(`assistants.tools.current_call_id()`). The output
is recorded on the run step (first writer wins) and read back by the next model round; the
arguments are read from the store, so neither crosses Temporal history.
"""

from __future__ import annotations

import time
from datetime import timedelta

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import CallStopped, stoppable
from activities.run_watch import RunWatch
from assistants.metrics import Metrics
from assistants.storable import repair
from assistants.store import Store
from assistants.tools import ToolError, ToolRegistry
from workflows.shared import ToolCallInput

log = structlog.get_logger(__name__)

TOOL_ERROR = "ToolError"


class ToolActivities:
    def __init__(
        self,
        store: Store,
        tools: ToolRegistry,
        *,
        metrics: Metrics | None = None,
        watch: RunWatch | None = None,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._store = store
        self._tools = tools
        self._watch = watch or RunWatch(store.runs.statuses)
        self._shutdown_grace_s = shutdown_grace_s

    @activity.defn(name="run_tool")
    async def run_tool(self, call: ToolCallInput) -> None:
        bound = log.bind(
            run_id=call.run_id, tool=call.name, call_id=call.call_id, request_id=call.request_id
        )
        stored = await self._store.tool_calls.call(call.step_id, call.call_id)
        if stored["function"]["output"] is not None:
            return  # an earlier attempt finished and recorded it
        tool = self._tools.get(call.name)
        if tool is None:
            raise ApplicationError(
                f"The function tool {call.name!r} is not registered on this worker.",
                type=TOOL_ERROR,
                non_retryable=True,
            )
        attempt = activity.info().attempt
        bound.info("tool call", attempt=attempt)
        started = time.monotonic()
        outcome = "error"
        try:
            async with stoppable(
                lambda: self._watch.ended(call.run_id), shutdown_grace_s=self._shutdown_grace_s
            ):
                output = await tool.invoke(stored["function"]["arguments"], call.call_id)
            outcome = "ok"
        except CallStopped as stopped:
            bound.info("tool call stopped", reason=stopped.type)
            raise
        except ToolError as error:
            bound.info("tool reported an error", error=str(error))
            raise ApplicationError(str(error), type=TOOL_ERROR, non_retryable=True) from None
        except Exception as error:
            bound.warning("tool call failed", attempt=attempt, error=repr(error))
            raise ApplicationError(
                f"{type(error).__name__}: {error}", type=type(error).__name__
            ) from error
        finally:
            elapsed = timedelta(seconds=time.monotonic() - started)
            self._metrics.tool_call(call.name, outcome, elapsed)
        # A tool's string may hold lone surrogates; the store holds only what it can serve.
        await self._store.tool_calls.record_output(
            call.run_id, call.step_id, call.call_id, repair(output)
        )

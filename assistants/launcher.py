"""Starting, cancelling and answering run workflows from the API side.

Every intent is written to the store first, then sent to Temporal, and the store is what makes
the sending durable: an API that dies in between, or a Temporal that is unreachable, delays it
but never loses it.

- **Start.** The route inserts the run `queued` (taking the thread lock), then starts the workflow
  with workflow id = run id. A run still `queued` and never started after `requeue_after_s` is
  started by the sweeper here. Starting is idempotent (a duplicate id is rejected), so sweeping
  and a slow first start never run a run twice. A run whose start Temporal confirmed (started,
  or already there) is not re-sent: under load a run can stay `queued` for seconds after its
  workflow started, and re-sending every such start each pass took a seventh of a loaded
  `dev` process's GIL time (py-spy), spent on starts Temporal rejected.
- **Cancel.** The route writes `cancelling` and, in the same transaction, puts the cancel in an
  outbox: two columns on the run, `cancel_requested_at` and `cancel_delivered_at` (a column pair
  rather than an outbox table: a run has at most one cancel, and the sweeper's query is then one
  indexed read of `runs`). It then sends the `cancel` signal as signal-with-start (which reaches a
  running workflow, or starts one that sees the cancel at once), and marks it delivered when
  Temporal acknowledges. The sweeper re-sends every undelivered cancel each `sweep_interval_s`,
  until Temporal has it. A duplicate signal is harmless: the workflow's handler only sets a flag.
- **Tool outputs** are not swept: the client is waiting for its answer. They are staged in the
  store, then delivered as an update with a bounded wait (503 after `tool_outputs_timeout_s`);
  a retried request is recognised and joins the first one (see `assistants.store.tool_calls`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from assistants.config import Settings
from assistants.errors import InvalidRequest, ServiceUnavailable
from assistants.store import Store
from assistants.temporal import run_timeouts
from workflows.search_attributes import initial_attributes
from workflows.shared import (
    CANCEL_SIGNAL,
    SUBMIT_TOOL_OUTPUTS_UPDATE,
    WORKFLOW_NAME,
    RunInput,
    ToolOutputsSubmission,
)


class RunGone(Exception):
    """The run's workflow has already closed."""


log = structlog.get_logger(__name__)


class RunLauncher:
    def __init__(self, settings: Settings, store: Store, client: Client) -> None:
        self._settings = settings
        self._store = store
        self.client = client
        # Runs whose workflow Temporal confirmed exists, and when: the sweeper skips them.
        self._confirmed: dict[str, float] = {}

    def _input(self, run: dict[str, Any], project_id: str) -> RunInput:
        return RunInput(
            run_id=run["id"],
            thread_id=run["thread_id"],
            assistant_id=run["assistant_id"],
            project_id=project_id,
            model=run["model"],
            expires_at=run["expires_at"] or 0,
            timeouts=run_timeouts(self._settings),
            search_attributes=self._settings.search_attributes,
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
        )

    async def _start(self, run: dict[str, Any], project_id: str, *, signal: str | None) -> None:
        options: dict[str, Any] = {}
        if self._settings.search_attributes:
            options["search_attributes"] = initial_attributes(
                assistant_id=run["assistant_id"],
                thread_id=run["thread_id"],
                project_id=project_id,
                model=run["model"],
            )
        if signal is None:
            options["id_conflict_policy"] = WorkflowIDConflictPolicy.FAIL
            # When a worker shares this client (`dev`), the first workflow task comes back in
            # the start response instead of through the task queue.
            options["request_eager_start"] = True
        else:
            options["start_signal"] = signal  # signal-with-start: signals a running workflow
        await self.client.start_workflow(
            WORKFLOW_NAME,
            self._input(run, project_id),
            id=run["id"],
            task_queue=self._settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # What the Temporal UI shows for the workflow: ids only, never message text.
            static_summary=f"run of assistant {run['assistant_id']} on thread {run['thread_id']}",
            # Bounded, so an unreachable Temporal delays the HTTP answer by seconds, not minutes:
            # the run is already safe in the store and the sweeper will start it.
            rpc_timeout=timedelta(seconds=5),
            **options,
        )

    async def start(self, run: dict[str, Any], project_id: str) -> None:
        bound = log.bind(
            run_id=run["id"], thread_id=run["thread_id"], assistant_id=run["assistant_id"]
        )
        try:
            await self._start(run, project_id, signal=None)
        except WorkflowAlreadyStartedError:
            pass  # the sweeper (or a retried start) got there first: one workflow per run
        except RPCError as error:
            # The run stays `queued` in the store; the sweeper starts it once Temporal answers.
            bound.warning("workflow start failed; the sweeper will retry", error=str(error))
            return
        self._confirmed[run["id"]] = time.monotonic()

    async def cancel(self, run: dict[str, Any], project_id: str) -> bool:
        """Send the run's `cancel` as signal-with-start: it reaches a running workflow, or starts
        one that sees the cancel at once. True, and out of the outbox, once Temporal has it;
        False (it stays in the outbox for the sweeper) when Temporal did not answer."""
        try:
            await self._start(run, project_id, signal=CANCEL_SIGNAL)
        except WorkflowAlreadyStartedError:
            # The workflow is closed. It writes the run's terminal status before it closes, so
            # this is a no-op, except for a workflow an operator terminated: nothing else will
            # ever finish that run, and the cancel that was asked for is what it gets.
            await self._store.runs.finish(run["id"], "cancelled")
        except RPCError as error:
            log.warning(
                "cancel signal failed; the sweeper will retry", run_id=run["id"], error=str(error)
            )
            return False
        await self._store.runs.cancel_delivered(run["id"])
        return True

    async def submit_tool_outputs(
        self, run_id: str, submission_id: str, call_ids: list[str]
    ) -> None:
        """Deliver staged tool outputs as the workflow's `submit_tool_outputs` update and wait,
        at most `tool_outputs_timeout_s`, until they are applied. The workflow's validator
        rejects a submission that does not answer exactly the pending calls (or comes too
        late): that is an `InvalidRequest`.

        The update id is the submission id, which derives from the tool step: Temporal keeps an
        update it admitted even when nobody waits for it any more (no worker polled in time,
        the API died) and runs it when a worker comes back, and a retried request's update
        then joins that one (same outcome) instead of being a second submission."""
        handle = self.client.get_workflow_handle(run_id)
        timeout_s = self._settings.tool_outputs_timeout_s
        try:
            # `execute_update` alone would wait for as long as no worker polls: it re-sends the
            # request after each RPC timeout until the update is accepted.
            async with asyncio.timeout(timeout_s):
                await handle.execute_update(
                    SUBMIT_TOOL_OUTPUTS_UPDATE,
                    ToolOutputsSubmission(submission_id=submission_id, call_ids=call_ids),
                    id=submission_id,
                    rpc_timeout=timedelta(seconds=timeout_s),
                )
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError):
                param = cause.details[0] if cause.details and cause.details[0] else None
                raise InvalidRequest(cause.message, param=param) from None
            raise
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            log.warning("tool outputs not taken in time", run_id=run_id, timeout_s=timeout_s)
            raise ServiceUnavailable(
                f"The run did not take the tool outputs within {timeout_s:g} s (no worker is "
                "processing it). They are kept: retry the request."
            ) from None
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RunGone(run_id) from None
            raise ServiceUnavailable(f"Temporal is unavailable: {error.message}") from None

    async def sweep(self, *, starts: bool = True) -> int:
        """One pass: re-send undelivered cancels and, with `starts`, start runs left `queued`
        and forget stale unanswered tool-output submissions. Returns the intents sent."""
        cancels = await self._store.runs.undelivered_cancels(self._settings.sweep_interval_s)
        stale = []
        if starts:
            queued = await self._store.runs.stale_queued(self._settings.requeue_after_s)
            stale = [row for row in queued if row.id not in self._confirmed]
            self._forget_confirmed({row.id for row in queued})
            await self._store.tool_calls.forget_unacknowledged(self._settings.run_expires_after_s)

        async def resend_cancel(row: Any) -> None:
            if await self.cancel(_launch_fields(row), row.project_id):
                log.info("cancel re-sent", run_id=row.id)

        sends: list[Awaitable[object]] = [resend_cancel(row) for row in cancels]
        sends += [self.start(_launch_fields(row), row.project_id) for row in stale]
        # Concurrently, a few at a time: against an unreachable Temporal each send takes seconds
        # to fail, and one pass must not take as many times that as there are runs.
        limit = asyncio.Semaphore(_SWEEP_CONCURRENCY)

        async def send(intent: Awaitable[object]) -> None:
            async with limit:
                await intent

        await asyncio.gather(*(send(s) for s in sends))
        return len(sends)

    def _forget_confirmed(self, still_queued: set[str]) -> None:
        """Keep the confirmations the sweeper may still need: runs still `queued`, and runs
        too recent to be stale yet (it would otherwise re-send those in a later pass)."""
        recent = time.monotonic() - 2 * self._settings.requeue_after_s
        self._confirmed = {
            run_id: at
            for run_id, at in self._confirmed.items()
            if at >= recent or run_id in still_queued
        }

    async def sweep_forever(self) -> None:
        """Cancels every `sweep_interval_s` (they matter within seconds); starts every
        `requeue_after_s` (a queued run is only stale after that long anyway)."""
        next_starts = 0.0
        while True:
            now = time.monotonic()
            starts = now >= next_starts
            if starts:
                next_starts = now + self._settings.requeue_after_s
            try:
                await self.sweep(starts=starts)
            except Exception:  # the sweeper must outlive a store or Temporal hiccup
                log.exception("run sweeper failed")
            await asyncio.sleep(self._settings.sweep_interval_s)


_SWEEP_CONCURRENCY = 16


def _launch_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "thread_id": row.thread_id,
        "assistant_id": row.assistant_id,
        "model": row.model,
        "expires_at": row.expires_at,
    }

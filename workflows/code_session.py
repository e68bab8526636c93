"""`CodeSessionWorkflow`: the lifetime of one thread's code_interpreter session.

A session is a kernel process on one sandbox host, so every call must reach that host. This
workflow (id `ci-session-<thread id>`) is the thread's record of which host that is, and owns the
durable timers: the session is closed after `idle_s` without a call and `max_lifetime_s` after it
started, even across worker and server restarts.

- `claim` (an update, sent with update-with-start by the `ci_claim` activity on the shared
  sandbox queue): answers the host queue of the live session, or adopts the asking host's queue
  when there is none. Each claim counts as use (it resets the idle timer).
- `lost` (a signal from a run whose call never came back from that host): forget the host, so
  the next claim picks a live one.
- On expiry: `ci_close` on the host queue (a dead host simply never answers: the schedule-to-start
  timeout gives up), then the workflow ends; the next call starts a new one.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.code_shared import (
        CLAIM_UPDATE,
        LOST_SIGNAL,
        SESSION_WORKFLOW,
        ClaimInput,
        CloseInput,
        SessionParams,
    )

# A long-lived thread's session must not grow an unbounded history.
CLAIMS_BEFORE_CONTINUE_AS_NEW = 500


@workflow.defn(name=SESSION_WORKFLOW)
class CodeSessionWorkflow:
    @workflow.init
    def __init__(self, params: SessionParams) -> None:
        # State comes from the input here, not in `run`: the first `claim` arrives with the
        # start (update-with-start) and its handler may run before `run` begins.
        self._host_queue = params.host_queue
        self._started_at = params.started_at
        self._last_used = params.last_used or workflow.now().timestamp()
        self._changes = 0
        self._claims = 0
        self._closing = False
        self._changes_after_close = 0

    @workflow.update(name=CLAIM_UPDATE)
    async def claim(self, claim: ClaimInput) -> str:
        # A claim that arrives while the session is being closed waits, then gets a new one.
        await workflow.wait_condition(lambda: not self._closing)
        now = workflow.now().timestamp()
        if self._host_queue is None:
            self._host_queue = claim.candidate_queue
            self._started_at = now
        self._last_used = now
        self._claims += 1
        self._changes += 1
        return self._host_queue

    @workflow.signal(name=LOST_SIGNAL)
    def lost(self, host_queue: str) -> None:
        if self._host_queue == host_queue:
            self._host_queue = None
            self._changes += 1

    def _changed_since(self, seen: int) -> bool:
        return self._changes != seen

    @workflow.query(name="host_queue")
    def host_queue(self) -> str | None:
        return self._host_queue

    @workflow.run
    async def run(self, params: SessionParams) -> None:
        while True:
            deadline = self._last_used + params.idle_s
            if self._host_queue is not None:
                deadline = min(deadline, self._started_at + params.max_lifetime_s)
            remaining = max(0.0, deadline - workflow.now().timestamp())
            try:
                await workflow.wait_condition(
                    partial(self._changed_since, self._changes),
                    timeout=timedelta(seconds=remaining),
                    timeout_summary="code_interpreter session idle or max lifetime",
                )
            except TimeoutError:
                await self._close(params)
                if workflow.now().timestamp() >= self._last_used + params.idle_s:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if self._host_queue is None and self._changes == self._changes_after_close:
                        return
                continue
            if self._claims >= CLAIMS_BEFORE_CONTINUE_AS_NEW:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    SessionParams(
                        thread_id=params.thread_id,
                        idle_s=params.idle_s,
                        max_lifetime_s=params.max_lifetime_s,
                        host_queue=self._host_queue,
                        started_at=self._started_at,
                        last_used=self._last_used,
                    )
                )

    async def _close(self, params: SessionParams) -> None:
        host = self._host_queue
        self._closing = True
        try:
            if host is not None:
                try:
                    await workflow.execute_activity(
                        "ci_close",
                        CloseInput(thread_id=params.thread_id),
                        task_queue=host,
                        schedule_to_start_timeout=timedelta(seconds=10),
                        start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=RetryPolicy(maximum_attempts=2),
                        summary="close the idle code_interpreter session",
                    )
                except ActivityError:
                    workflow.logger.info("session host gone", extra={"thread_id": params.thread_id})
            self._host_queue = None
        finally:
            self._closing = False
            self._changes_after_close = self._changes

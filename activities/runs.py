"""Run state transitions, written to the store and the run's event log.

(`queued → in_progress` happens at the start of the model activity, see `activities/model.py`.)
"""

from __future__ import annotations

import structlog
from temporalio import activity

from assistants.store import Store
from workflows.shared import FinishInput

log = structlog.get_logger(__name__)


class RunStateActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="finish_run")
    async def finish(self, finish: FinishInput) -> None:
        last_error = None
        if finish.error_code is not None:
            last_error = {"code": finish.error_code, "message": finish.error_message or ""}
        run = await self._store.runs.finish(
            finish.run_id,
            finish.status,
            usage=finish.usage.as_object() if finish.usage else None,
            last_error=last_error,
            incomplete_reason=finish.incomplete_reason,
        )
        log.info(
            "run finished",
            run_id=finish.run_id,
            thread_id=run["thread_id"],
            assistant_id=run["assistant_id"],
            status=run["status"],
        )

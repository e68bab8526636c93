"""A caller's own workflow that asks the assistant as one step of its work — the way a platform
team uses `assistants.trigger.execute_child_run`. Kept in a module of its own: the workflow
sandbox re-imports the module that defines a workflow, so it must import little."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

# Pass the imports through the sandbox: the result's dataclasses are then resolved from the one,
# real `workflows.shared` module.
with workflow.unsafe.imports_passed_through():
    import workflows.shared  # noqa: F401
    from assistants.trigger import MessageInput, RunRequest, RunResult, execute_child_run


@workflow.defn
class SupportTicketWorkflow:
    @workflow.run
    async def run(self, args: list[str]) -> RunResult:
        assistant_id, task_queue, question = args
        result = await execute_child_run(
            RunRequest(
                project_id="default",
                assistant_id=assistant_id,
                messages=[MessageInput("user", question)],
                metadata={"ticket": "T-1"},
            ),
            task_queue=task_queue,
        )
        await workflow.sleep(timedelta(milliseconds=1))  # the caller goes on with its work
        return result

"""`WebhookDeliveryWorkflow`: one webhook delivery, on its own.

A run's workflow starts one per subscribed webhook when the run reaches an event (its end,
`requires_action`) and does not wait for it: the child is abandoned to finish by itself
(`ParentClosePolicy.ABANDON`). Before, each delivery was an activity of the run's workflow,
which closed only once every delivery had succeeded or given up (about ten minutes of retries
for a receiver that is down): a caller awaiting the run's result, a platform team's own
workflow running the assistant as a child, waited that long for a run the store had finished.

The delivery itself is unchanged: `WebhookActivities.deliver` with retries for about ten
minutes, every attempt the same `Webhook-Id` and body. The workflow id is the run id and the
delivery id (`<run id>-webhook-<evt id>`), so the Temporal UI lists a run's deliveries next to
it, and a run's workflow that replays starts no second one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from workflows.shared import WebhookDelivery

DELIVERY_WORKFLOW_NAME = "WebhookDelivery"
# Webhook deliveries retry for about ten minutes, then give up (a receiver that is down must not
# keep the delivery open for long; it never fails the run).
WEBHOOK_TIMEOUT = timedelta(seconds=15)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=12,
    non_retryable_error_types=["webhook_rejected"],
)


def delivery_workflow_id(delivery: WebhookDelivery) -> str:
    return f"{delivery.run_id}-webhook-{delivery.delivery_id}"


async def deliver(delivery: WebhookDelivery) -> bool:
    """Workflow code: the delivery's activity, retried. True once the receiver took the
    event; False when the delivery gave up (logged; never an error). Runs from before the
    `detached-webhooks` patch call it from their own workflow."""
    try:
        await workflow.execute_activity_method(
            WebhookActivities.deliver,
            delivery,
            start_to_close_timeout=WEBHOOK_TIMEOUT,
            retry_policy=WEBHOOK_RETRY,
            summary=f"webhook {delivery.webhook_id}: {delivery.event}",
        )
    except ActivityError as error:
        workflow.logger.warning(
            "webhook delivery gave up",
            extra={
                "run_id": delivery.run_id,
                "webhook_id": delivery.webhook_id,
                "error": str(error),
            },
        )
        return False
    return True


@workflow.defn(name=DELIVERY_WORKFLOW_NAME)
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, delivery: WebhookDelivery) -> bool:
        """True once the receiver took the event; False when the delivery gave up."""
        return await deliver(delivery)

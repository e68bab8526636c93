"""Completion webhooks: which endpoints want an event, and one signed delivery to one of them.

A delivery is an activity, so Temporal retries it (with the caller's retry policy) until the
receiver answers 2xx. A receiver that refuses the request itself (a 4xx other than 408, 409 or
429) fails it for good: retrying would send the very same request. Every attempt carries the
same `Webhook-Id` and a fresh `Webhook-Timestamp` and signature (see `assistants.webhooks`).
"""

from __future__ import annotations

import json
import time

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from assistants.store import Store
from assistants.webhooks import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from workflows.shared import WebhookDelivery

log = structlog.get_logger(__name__)

DELIVERY_TIMEOUT_S = 10.0
# 4xx answers that may well change on a retry; every other 4xx is final.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 409, 429})
REJECTED = "webhook_rejected"
FAILED = "webhook_failed"


class WebhookActivities:
    def __init__(self, store: Store, http: httpx.AsyncClient | None = None) -> None:
        self._store = store
        self._http = http  # None: a client per delivery

    @activity.defn(name="deliver_webhook")
    async def deliver(self, d: WebhookDelivery) -> None:
        webhook = await self._store.webhooks.get(d.webhook_id)
        if webhook is None:
            log.info("webhook gone, delivery dropped", webhook_id=d.webhook_id, run_id=d.run_id)
            return
        # The run as the event itself carried it (from the event log), so every attempt of a
        # delivery sends the same body even if the run has moved on since.
        snapshot = await self._store.runs.event_snapshot(d.run_id, d.event)
        if snapshot is None:
            log.info("run event gone, delivery dropped", webhook_id=d.webhook_id, run_id=d.run_id)
            return
        run, created_at = snapshot
        now = int(time.time())
        body = json.dumps(
            {
                "id": d.delivery_id,
                "object": "event",
                "type": d.event,
                "created_at": created_at,
                "data": run,
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: d.delivery_id,
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(webhook.secret, now, body),
        }
        if self._http is not None:
            status = await _post(self._http, webhook.url, body, headers)
        else:
            async with httpx.AsyncClient() as client:
                status = await _post(client, webhook.url, body, headers)
        context = {"webhook_id": d.webhook_id, "run_id": d.run_id, "webhook_event": d.event}
        if 200 <= status < 300:
            log.info("webhook delivered", status=status, **context)
            return
        message = f"webhook {d.webhook_id} answered HTTP {status}"
        if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
            log.warning("webhook rejected the delivery", status=status, **context)
            raise ApplicationError(message, type=REJECTED, non_retryable=True)
        log.warning("webhook delivery failed, will retry", status=status, **context)
        raise ApplicationError(message, type=FAILED)


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST the exact signed bytes; the status code (the response body is never read)."""
    try:
        async with client.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=DELIVERY_TIMEOUT_S,
            follow_redirects=False,
        ) as response:
            return response.status_code
    except httpx.HTTPError as error:
        raise ApplicationError(
            f"webhook delivery to {url} failed: {type(error).__name__}: {error}", type=FAILED
        ) from error

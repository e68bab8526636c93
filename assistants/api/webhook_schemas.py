"""Request bodies of the completion-webhook endpoints (an extension of the Assistants API)."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import Field, field_validator

from assistants.requests import Strict

MAX_URL_LENGTH = 2048

# The names in `workflows.shared.WEBHOOK_EVENTS`, as a type pydantic validates against.
WebhookEvent = Literal[
    "thread.run.completed",
    "thread.run.incomplete",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.requires_action",
]


class WebhookCreate(Strict):
    url: str = Field(max_length=MAX_URL_LENGTH)
    # None or [] subscribes to every event.
    events: list[WebhookEvent] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError("expected an absolute http or https URL.") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("expected an absolute http or https URL.")
        return url

    def event_list(self) -> list[str]:
        """The subscribed events, without duplicates, in the order given."""
        return list(dict.fromkeys(self.events or []))

"""A local webhook endpoint for tests and the replay recorder: records every delivery and answers
500 to the first `fail_first` of them (a receiver that is down), 200 to the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio.client import WorkflowHistory

from assistants.devserver import free_port
from tests.support.stack import Stack


class WebhookReceiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.secret = ""
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.received) < receiver.fail_first else 200
                receiver.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int, timeout: float = 30) -> None:
        """Until `n` deliveries (successful or not) have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < deadline, f"only {len(self.received)} deliveries"
            time.sleep(0.05)


def delivery_ids(history: WorkflowHistory) -> list[str]:
    """The workflow ids of the webhook deliveries (child workflows) a run's workflow started."""
    return [
        event.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for event in history.events
        if event.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


@contextmanager
def subscribed(stack: Stack, url: str, events: list[str]) -> Iterator[dict[str, Any]]:
    """A webhook of the stack's project for `events`, posting to `url` (the created object,
    with its secret), deleted on the way out so later runs on the stack do not call it."""
    with stack.http() as http:
        hook: dict[str, Any] = http.post("/webhooks", json={"url": url, "events": events}).json()
    try:
        yield hook
    finally:
        with stack.http() as http:
            http.delete(f"/webhooks/{hook['id']}")

"""The services a request handler can reach, stored on the application state."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from assistants.config import Settings
from assistants.files import BlobStorage
from assistants.ingestion_launcher import IngestionLauncher
from assistants.launcher import RunLauncher
from assistants.metrics import Metrics
from assistants.store import Store
from assistants.streaming.notify import RunNotifier


@dataclass
class Services:
    settings: Settings
    store: Store
    launcher: RunLauncher
    notifier: RunNotifier
    blobs: BlobStorage  # uploaded files' bytes (local directory or S3)
    ingestion: IngestionLauncher  # starts/cancels ingestion workflows, schedules store expiry
    metrics: Metrics = field(default_factory=Metrics)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found

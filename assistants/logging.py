"""Structured logging for every process: JSON lines in production, readable console in `dev`.

Context bound with `structlog.contextvars` (project, run, thread, assistant ids) is merged into
every line. Standard-library loggers (uvicorn, temporalio) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys

import structlog
from temporalio import activity as temporal_activity
from temporalio import workflow as temporal_workflow


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Temporal's workflow and activity loggers pass their context (and our run/thread/assistant/
    # request ids) as `extra`: render it as fields rather than glued onto the message.
    temporal_workflow.logger.workflow_info_on_message = False
    temporal_activity.logger.activity_info_on_message = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)

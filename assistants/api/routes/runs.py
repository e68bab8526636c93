"""`/v1/threads/{thread_id}/runs…`, `/v1/threads/runs` and run steps."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.context import Services, services
from assistants.api.http import json_body, ok, page_params, project
from assistants.api.schemas import (
    RunCreate,
    RunModify,
    ThreadAndRunCreate,
    _RunOptions,
    dump_optional,
    parse,
)
from assistants.errors import InvalidRequest
from assistants.run_config import resolve_run_fields


def _poll_headers(svc: Services) -> dict[str, str]:
    # The SDK's `poll` helpers wait this long between GETs (1 s when absent).
    return {"openai-poll-after-ms": str(svc.settings.poll_after_ms)}


def _refuse_stream(body: _RunOptions) -> None:
    if body.stream:
        raise InvalidRequest("Streaming runs are not available on this server yet.", param="stream")


async def create(request: Request) -> Response:
    body = parse(RunCreate, await json_body(request))
    _refuse_stream(body)
    svc, pid = services(request), project(request)
    thread_id = request.path_params["thread_id"]
    await svc.store.threads.get(pid, thread_id)  # 404 for the thread before the assistant
    assistant = await svc.store.assistants.get(pid, body.assistant_id, param="assistant_id")
    fields = resolve_run_fields(
        body,
        assistant,
        expires_after_s=svc.settings.run_expires_after_s,
        additional_instructions=body.additional_instructions,
    )
    extra = [m.stored() for m in body.additional_messages or []]
    run = await svc.store.runs.create(pid, thread_id, fields, extra)
    await svc.launcher.start(run, pid)
    return ok(run, _poll_headers(svc))


async def create_thread_and_run(request: Request) -> Response:
    body = parse(ThreadAndRunCreate, await json_body(request))
    _refuse_stream(body)
    svc, pid = services(request), project(request)
    assistant = await svc.store.assistants.get(pid, body.assistant_id, param="assistant_id")
    fields = resolve_run_fields(body, assistant, expires_after_s=svc.settings.run_expires_after_s)
    thread_body = body.thread
    tool_resources: Any = dump_optional(body.tool_resources)
    if thread_body is not None and thread_body.tool_resources is not None:
        tool_resources = dump_optional(thread_body.tool_resources)
    _, run = await svc.store.create_thread_and_run(
        pid,
        metadata=(thread_body.metadata if thread_body else None) or {},
        tool_resources=tool_resources,
        messages=[m.stored() for m in (thread_body.messages if thread_body else None) or []],
        run_fields=fields,
    )
    await svc.launcher.start(run, pid)
    return ok(run, _poll_headers(svc))


async def retrieve(request: Request) -> Response:
    svc, p = services(request), request.path_params
    run = await svc.store.runs.get(project(request), p["thread_id"], p["run_id"])
    return ok(run, _poll_headers(svc))


async def list_(request: Request) -> Response:
    svc = services(request)
    return ok(
        await svc.store.runs.list_runs(
            project(request), request.path_params["thread_id"], page_params(request)
        )
    )


async def modify(request: Request) -> Response:
    body = parse(RunModify, await json_body(request))
    p = request.path_params
    metadata = (body.metadata or {}) if "metadata" in body.model_fields_set else None
    return ok(
        await services(request).store.runs.modify(
            project(request), p["thread_id"], p["run_id"], metadata
        )
    )


async def cancel(request: Request) -> Response:
    svc, pid, p = services(request), project(request), request.path_params
    run = await svc.store.runs.request_cancel(pid, p["thread_id"], p["run_id"])
    await svc.launcher.cancel(run, pid)
    return ok(run, _poll_headers(svc))


async def list_steps(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.runs.list_steps(
            project(request), p["thread_id"], p["run_id"], page_params(request)
        )
    )


async def retrieve_step(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.runs.get_step(
            project(request), p["thread_id"], p["run_id"], p["step_id"]
        )
    )


routes = [
    Route("/threads/runs", create_thread_and_run, methods=["POST"]),
    Route("/threads/{thread_id}/runs", create, methods=["POST"]),
    Route("/threads/{thread_id}/runs", list_, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", retrieve, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", modify, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}/steps", list_steps, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", retrieve_step, methods=["GET"]),
]

"""`/v1/threads/{thread_id}/runs…`, `/v1/threads/runs` and run steps."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from assistants.api.context import Services, services
from assistants.api.http import json_body, ok, page_params, project
from assistants.api.schemas import (
    RunCreate,
    RunModify,
    SubmitToolOutputs,
    ThreadAndRunCreate,
    dump_optional,
    parse,
)
from assistants.errors import InvalidRequest
from assistants.launcher import RunGone
from assistants.run_config import resolve_run_fields
from assistants.streaming.sse import sse_stream


def _poll_headers(svc: Services) -> dict[str, str]:
    # The SDK's `poll` helpers wait this long between GETs (1 s when absent).
    return {"openai-poll-after-ms": str(svc.settings.poll_after_ms)}


def _stream(svc: Services, run_id: str, after_seq: int = 0) -> Response:
    """The run's events as SSE, from the durable log. A client that disconnects only stops
    reading: the run goes on (as on OpenAI), and `GET …/events` resumes the stream."""
    return StreamingResponse(
        sse_stream(
            svc.store,
            svc.notifier,
            run_id,
            after_seq,
            keepalive_s=svc.settings.stream_keepalive_s,
            metrics=svc.metrics,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def create(request: Request) -> Response:
    body = parse(RunCreate, await json_body(request))
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
    if body.stream:
        return _stream(svc, run["id"])
    return ok(run, _poll_headers(svc))


async def create_thread_and_run(request: Request) -> Response:
    body = parse(ThreadAndRunCreate, await json_body(request))
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
    if body.stream:
        return _stream(svc, run["id"])
    return ok(run, _poll_headers(svc))


async def retrieve(request: Request) -> Response:
    svc, p = services(request), request.path_params
    run = await svc.store.runs.get(project(request), p["thread_id"], p["run_id"])
    return ok(run, _poll_headers(svc))


async def events(request: Request) -> Response:
    """`GET …/runs/{run_id}/events`: (re)attach to a run's stream. Sends the events after
    `Last-Event-ID` (or `?after=`; from the start when neither is given) until the run ends or
    needs action, then `done`. An extension of the Assistants API."""
    svc, p = services(request), request.path_params
    await svc.store.runs.get(project(request), p["thread_id"], p["run_id"])  # 404s
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid 'Last-Event-ID': expected an event sequence number, but got '{raw}'.",
            param="Last-Event-ID",
        ) from None
    if after < 0:
        raise InvalidRequest(
            "Invalid 'Last-Event-ID': must not be negative.", param="Last-Event-ID"
        )
    return _stream(svc, p["run_id"], after)


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


async def submit_tool_outputs(request: Request) -> Response:
    """Stage the outputs in the store (checked against the run), then hand them to the workflow
    as an update; its validator has the last word. A rejected submission leaves nothing behind.
    With `stream: true`, the continuation is served from the event log right after the events
    the client has already seen: `thread.run.step.completed` for the tool step, then
    `thread.run.queued`, and so on."""
    body = parse(SubmitToolOutputs, await json_body(request))
    svc, pid, p = services(request), project(request), request.path_params
    outputs = [o.model_dump() for o in body.tool_outputs]
    submission_id, after_seq = await svc.store.tool_calls.stage_outputs(
        pid, p["thread_id"], p["run_id"], outputs
    )
    try:
        await svc.launcher.submit_tool_outputs(
            p["run_id"], submission_id, [o["tool_call_id"] for o in outputs]
        )
    except RunGone:
        await svc.store.tool_calls.discard_submission(submission_id)
        run = await svc.store.runs.get(pid, p["thread_id"], p["run_id"])
        raise InvalidRequest(
            f'Runs in status "{run["status"]}" do not accept tool outputs.'
        ) from None
    except BaseException:
        await svc.store.tool_calls.discard_submission(submission_id)
        raise
    if body.stream:
        return _stream(svc, p["run_id"], after_seq)
    run = await svc.store.runs.get(pid, p["thread_id"], p["run_id"])
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
    Route("/threads/{thread_id}/runs/{run_id}/events", events, methods=["GET"]),
    Route(
        "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        submit_tool_outputs,
        methods=["POST"],
    ),
    Route("/threads/{thread_id}/runs/{run_id}/steps", list_steps, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", retrieve_step, methods=["GET"]),
]

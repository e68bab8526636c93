"""`/v1/threads/{thread_id}/runs…`, `/v1/threads/runs` and run steps."""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from assistants.api.admission import step_aside
from assistants.api.attachment_stores import add_to_thread_store, search_attachments
from assistants.api.context import Services, services
from assistants.api.file_refs import messages_refs, require_files, tool_resource_refs
from assistants.api.file_search_resources import FileSearchResources
from assistants.api.http import json_body, limits, ok, page_params, project
from assistants.api.step_include import include_content, with_search_content
from assistants.errors import InvalidRequest
from assistants.launcher import RunGone
from assistants.requests import (
    RunCreate,
    RunModify,
    SubmitToolOutputs,
    ThreadAndRunCreate,
    dump_optional,
    parse,
)
from assistants.run_config import resolve_run_fields
from assistants.store.tool_calls import StagedOutputs
from assistants.streaming.held_poll import hold_seconds, until_settled
from assistants.streaming.sse import sse_stream

# Event sequence numbers are 32-bit integers in the store (`run_events.seq`).
MAX_EVENT_SEQ = 2**31 - 1


def _poll_headers(svc: Services) -> dict[str, str]:
    # The SDK's `poll` helpers wait this long between GETs (1 s when absent).
    return {"openai-poll-after-ms": str(svc.settings.poll_after_ms)}


def _stream(
    svc: Services, run_id: str, after_seq: int = 0, *, content_of: str | None = None
) -> Response:
    """The run's events as SSE, from the durable log. A client that disconnects only stops
    reading: the run goes on (as on OpenAI), and `GET …/events` resumes the stream.
    `content_of` (a project id): file_search results carry their content (`include[]`)."""
    return StreamingResponse(
        sse_stream(
            svc.store,
            svc.notifier,
            run_id,
            after_seq,
            keepalive_s=svc.settings.stream_keepalive_s,
            metrics=svc.metrics,
            rewrite=with_search_content(svc, content_of) if content_of else None,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def create(request: Request) -> Response:
    include = include_content(request)  # checked first: a bad value is a 400
    body = parse(RunCreate, await json_body(request), limits(request))
    svc, pid = services(request), project(request)
    thread_id = request.path_params["thread_id"]
    _, assistant = await svc.store.thread_and_assistant(pid, thread_id, body.assistant_id)
    await require_files(
        svc.store.files, pid, messages_refs(body.additional_messages, "additional_messages")
    )
    fields = resolve_run_fields(
        body,
        assistant,
        expires_after_s=svc.settings.run_expires_after_s,
        additional_instructions=body.additional_instructions,
    )
    extra = [m.stored() for m in body.additional_messages or []]
    run = await svc.store.runs.create(pid, thread_id, fields, extra)
    await add_to_thread_store(
        svc, pid, thread_id, search_attachments(body.additional_messages or [])
    )
    await svc.launcher.start(run, pid)
    if body.stream:
        return _stream(svc, run["id"], content_of=pid if include else None)
    return ok(run, _poll_headers(svc))


async def create_thread_and_run(request: Request) -> Response:
    body = parse(ThreadAndRunCreate, await json_body(request), limits(request))
    svc, pid = services(request), project(request)
    assistant = await svc.store.assistants.get(pid, body.assistant_id, param="assistant_id")
    fields = resolve_run_fields(body, assistant, expires_after_s=svc.settings.run_expires_after_s)
    thread_body = body.thread
    refs = tool_resource_refs(body.tool_resources, "tool_resources")
    if thread_body is not None:
        refs += tool_resource_refs(thread_body.tool_resources, "thread.tool_resources")
        refs += messages_refs(thread_body.messages, "thread.messages")
    await require_files(svc.store.files, pid, refs)
    # The helper that creates a vector store exists on the thread's tool_resources only.
    search = FileSearchResources(
        svc, pid, body.tool_resources, "tool_resources", helper_allowed=False
    )
    await search.check()
    tool_resources: Any = dump_optional(body.tool_resources)
    if thread_body is not None and thread_body.tool_resources is not None:
        tool_resources = dump_optional(thread_body.tool_resources)
        search = FileSearchResources(
            svc,
            pid,
            thread_body.tool_resources,
            "thread.tool_resources",
            helper_allowed=True,
            thread=True,
        )
        await search.check()
    _, run = await svc.store.create_thread_and_run(
        pid,
        metadata=(thread_body.metadata if thread_body else None) or {},
        tool_resources=tool_resources,
        messages=[m.stored() for m in (thread_body.messages if thread_body else None) or []],
        run_fields=fields,
        prepare=search.prepare,
    )
    await search.launch()
    attached = search_attachments((thread_body.messages if thread_body else None) or [])
    await add_to_thread_store(svc, pid, run["thread_id"], attached)
    await svc.launcher.start(run, pid)
    if body.stream:
        return _stream(svc, run["id"])
    return ok(run, _poll_headers(svc))


async def retrieve(request: Request) -> Response:
    svc, p = services(request), request.path_params
    read = functools.partial(svc.store.runs.get, project(request), p["thread_id"], p["run_id"])
    hold_s = hold_seconds(request.headers, svc.settings.poll_hold_ms)
    if not hold_s:
        return ok(await read(), _poll_headers(svc))
    # The SDK's poll helper: answer when the run settles (assistants/streaming/held_poll.py).
    run = await until_settled(
        read, svc.notifier, p["run_id"], hold_s, before_wait=lambda: step_aside(request.scope)
    )
    return ok(run, _poll_headers(svc))


async def events(request: Request) -> Response:
    """`GET …/runs/{run_id}/events`: (re)attach to a run's stream. Sends the events after
    `Last-Event-ID` (or `?after=`; from the start when neither is given) until the run ends or
    needs action, then `done`. An extension of the Assistants API."""
    svc, p = services(request), request.path_params
    await svc.store.runs.get(project(request), p["thread_id"], p["run_id"])  # 404s
    name, raw = "Last-Event-ID", request.headers.get("last-event-id")
    if not raw:
        name, raw = "after", request.query_params.get("after") or "0"
    return _stream(svc, p["run_id"], _event_seq(name, raw))


def _event_seq(name: str, raw: str) -> int:
    """A resume position, checked before the stream's 200 goes out: once streaming, an error can
    only cut the stream. Plain decimal digits (no sign, `_`, spaces or other scripts' digits
    that `int()` takes) within the event log's 32-bit sequence numbers."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= MAX_EVENT_SEQ:
        return int(raw)
    shown = raw if len(raw) <= 40 else f"{raw[:40]}…"
    raise InvalidRequest(
        f"Invalid '{name}': expected an event sequence number (an integer from 0 to "
        f"{MAX_EVENT_SEQ}), but got '{shown}'.",
        param=name,
        code="invalid_value",
    )


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
    """`cancelling` in the store (with the cancel in its outbox), then the signal. If the signal
    does not get through, the API's sweeper re-sends it until it does; the answer is the same."""
    svc, pid, p = services(request), project(request), request.path_params
    run = await svc.store.runs.request_cancel(pid, p["thread_id"], p["run_id"])
    await svc.launcher.cancel(run, pid)
    return ok(run, _poll_headers(svc))


async def submit_tool_outputs(request: Request) -> Response:
    """Stage the outputs in the store (checked against the run), then hand them to the workflow
    as an update; its validator has the last word. A rejected submission leaves nothing behind.
    The answer is the run as this submission left it (`queued`), from the event it appended:
    by the time the update returns, the workflow may have moved the run on.

    If the workflow does not take the update within `tool_outputs_timeout_s` (no worker), the
    answer is a 503 and the staged outputs stay: Temporal may still apply them, and a retry of
    the request joins that update or delivers them itself, then answers success.
    With `stream: true`, the continuation is served from the event log right after the events
    the client has already seen: `thread.run.step.completed` for the tool step, then
    `thread.run.queued`, and so on."""
    body = parse(SubmitToolOutputs, await json_body(request))
    svc, pid, p = services(request), project(request), request.path_params
    outputs = [o.model_dump() for o in body.tool_outputs]
    staged = await svc.store.tool_calls.stage_outputs(pid, p["thread_id"], p["run_id"], outputs)
    if not staged.applied:
        await _deliver_outputs(svc, pid, p["thread_id"], p["run_id"], staged)
    run = await svc.store.tool_calls.acknowledge(staged, p["run_id"])
    if body.stream:
        return _stream(svc, p["run_id"], staged.after_seq)
    return ok(run, _poll_headers(svc))


async def _deliver_outputs(
    svc: Services, pid: str, thread_id: str, run_id: str, staged: StagedOutputs
) -> None:
    try:
        await svc.launcher.submit_tool_outputs(run_id, staged.submission_id, staged.call_ids)
    except (RunGone, InvalidRequest) as error:
        # Rejected, unless an earlier request's update applied these outputs in the meantime.
        if await svc.store.tool_calls.submission_result(run_id, staged.step_id) is not None:
            return
        await svc.store.tool_calls.discard_submission(staged.submission_id)
        if isinstance(error, InvalidRequest):
            raise
        run = await svc.store.runs.get(pid, thread_id, run_id)
        raise InvalidRequest(
            f'Runs in status "{run["status"]}" do not accept tool outputs.'
        ) from None
    # Anything else (a 503: Temporal unreachable, or no worker took the update in time) keeps
    # the staged outputs: Temporal may hold the update and apply them when a worker comes back.


async def list_steps(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.runs.list_steps(
            project(request),
            p["thread_id"],
            p["run_id"],
            page_params(request),
            include_content(request),
        )
    )


async def retrieve_step(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.runs.get_step(
            project(request), p["thread_id"], p["run_id"], p["step_id"], include_content(request)
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

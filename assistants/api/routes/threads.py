"""`/v1/threads` and `/v1/threads/{thread_id}/messages`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.context import services
from assistants.api.http import json_body, ok, page_params, project
from assistants.api.schemas import (
    MessageCreate,
    MessageModify,
    ThreadCreate,
    ThreadModify,
    dump_optional,
    parse,
)


async def create(request: Request) -> Response:
    body = parse(ThreadCreate, await json_body(request))
    thread = await services(request).store.threads.create(
        project(request),
        body.metadata or {},
        dump_optional(body.tool_resources),
        [m.stored() for m in body.messages or []],
    )
    return ok(thread)


async def retrieve(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    return ok(await services(request).store.threads.get(project(request), thread_id))


async def modify(request: Request) -> Response:
    body = parse(ThreadModify, await json_body(request))
    fields: dict[str, Any] = {}
    if "metadata" in body.model_fields_set:
        fields["metadata"] = body.metadata or {}
    if "tool_resources" in body.model_fields_set:
        fields["tool_resources"] = dump_optional(body.tool_resources)
    thread_id = request.path_params["thread_id"]
    return ok(await services(request).store.threads.modify(project(request), thread_id, fields))


async def delete(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    return ok(await services(request).store.threads.delete(project(request), thread_id))


async def create_message(request: Request) -> Response:
    body = parse(MessageCreate, await json_body(request))
    thread_id = request.path_params["thread_id"]
    message = await services(request).store.threads.create_message(
        project(request), thread_id, body.stored()
    )
    return ok(message)


async def retrieve_message(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.threads.get_message(
            project(request), p["thread_id"], p["message_id"]
        )
    )


async def modify_message(request: Request) -> Response:
    body = parse(MessageModify, await json_body(request))
    p = request.path_params
    metadata = (body.metadata or {}) if "metadata" in body.model_fields_set else None
    return ok(
        await services(request).store.threads.modify_message(
            project(request), p["thread_id"], p["message_id"], metadata
        )
    )


async def delete_message(request: Request) -> Response:
    p = request.path_params
    return ok(
        await services(request).store.threads.delete_message(
            project(request), p["thread_id"], p["message_id"]
        )
    )


async def list_messages(request: Request) -> Response:
    run_id = request.query_params.get("run_id") or None
    return ok(
        await services(request).store.threads.list_messages(
            project(request), request.path_params["thread_id"], page_params(request), run_id
        )
    )


routes = [
    Route("/threads", create, methods=["POST"]),
    Route("/threads/{thread_id}", retrieve, methods=["GET"]),
    Route("/threads/{thread_id}", modify, methods=["POST"]),
    Route("/threads/{thread_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/messages", create_message, methods=["POST"]),
    Route("/threads/{thread_id}/messages", list_messages, methods=["GET"]),
    Route("/threads/{thread_id}/messages/{message_id}", retrieve_message, methods=["GET"]),
    Route("/threads/{thread_id}/messages/{message_id}", modify_message, methods=["POST"]),
    Route("/threads/{thread_id}/messages/{message_id}", delete_message, methods=["DELETE"]),
]

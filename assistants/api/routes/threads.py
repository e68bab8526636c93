"""`/v1/threads` and `/v1/threads/{thread_id}/messages`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.attachment_stores import add_to_thread_store, search_attachments
from assistants.api.context import services
from assistants.api.file_refs import (
    message_refs,
    messages_refs,
    require_files,
    tool_resource_refs,
)
from assistants.api.file_search_resources import FileSearchResources
from assistants.api.http import json_body, limits, ok, page_params, project
from assistants.requests import (
    MessageCreate,
    MessageModify,
    ThreadCreate,
    ThreadModify,
    dump_optional,
    parse,
)


async def create(request: Request) -> Response:
    body = parse(ThreadCreate, await json_body(request), limits(request))
    refs = tool_resource_refs(body.tool_resources, "tool_resources")
    refs += messages_refs(body.messages, "messages")
    await require_files(services(request).store.files, project(request), refs)
    svc, pid = services(request), project(request)
    search = FileSearchResources(
        svc, pid, body.tool_resources, "tool_resources", helper_allowed=True, thread=True
    )
    await search.check()
    thread = await svc.store.threads.create(
        pid,
        body.metadata or {},
        dump_optional(body.tool_resources),
        [m.stored() for m in body.messages or []],
        prepare=search.prepare,
    )
    await search.launch()
    await add_to_thread_store(svc, pid, thread["id"], search_attachments(body.messages or []))
    return ok(thread)


async def retrieve(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    return ok(await services(request).store.threads.get(project(request), thread_id))


async def modify(request: Request) -> Response:
    body = parse(ThreadModify, await json_body(request))
    refs = tool_resource_refs(body.tool_resources, "tool_resources")
    await require_files(services(request).store.files, project(request), refs)
    await FileSearchResources(
        services(request),
        project(request),
        body.tool_resources,
        "tool_resources",
        helper_allowed=False,
    ).check()
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
    body = parse(MessageCreate, await json_body(request), limits(request))
    thread_id = request.path_params["thread_id"]
    refs = message_refs(body)
    if refs:
        store = services(request).store
        await store.threads.get(project(request), thread_id)  # an unknown thread 404s first
        await require_files(store.files, project(request), refs)
    message = await services(request).store.threads.create_message(
        project(request), thread_id, body.stored()
    )
    await add_to_thread_store(
        services(request), project(request), thread_id, search_attachments([body])
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

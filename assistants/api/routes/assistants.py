"""`/v1/assistants`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.context import services
from assistants.api.file_refs import require_files, tool_resource_refs
from assistants.api.file_search_resources import FileSearchResources
from assistants.api.http import json_body, ok, page_params, project
from assistants.requests import (
    AssistantCreate,
    AssistantModify,
    dump_optional,
    dump_tools,
    parse,
)


def _fields(body: AssistantCreate | AssistantModify, *, partial: bool) -> dict[str, Any]:
    given = body.model_fields_set if partial else set(type(body).model_fields)
    data: dict[str, Any] = {}
    for name in given - {"reasoning_effort"}:
        value = getattr(body, name)
        if name == "model" and value is None:
            continue  # the model can be changed, not removed
        if name == "tools":
            data[name] = dump_tools(value)
        elif name == "metadata":
            data[name] = value or {}
        else:
            data[name] = dump_optional(value)
    return data


async def create(request: Request) -> Response:
    body = parse(AssistantCreate, await json_body(request))
    fields = _fields(body, partial=False)
    refs = tool_resource_refs(body.tool_resources, "tool_resources")
    await require_files(services(request).store.files, project(request), refs)
    svc, pid = services(request), project(request)
    search = FileSearchResources(
        svc, pid, body.tool_resources, "tool_resources", helper_allowed=True
    )
    await search.check()
    assistant = await svc.store.assistants.create(pid, fields, prepare=search.prepare)
    await search.launch()
    return ok(assistant)


async def retrieve(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    return ok(await services(request).store.assistants.get(project(request), assistant_id))


async def modify(request: Request) -> Response:
    body = parse(AssistantModify, await json_body(request))
    fields = _fields(body, partial=True)
    refs = tool_resource_refs(body.tool_resources, "tool_resources")
    await require_files(services(request).store.files, project(request), refs)
    await FileSearchResources(
        services(request),
        project(request),
        body.tool_resources,
        "tool_resources",
        helper_allowed=False,
    ).check()
    assistant_id = request.path_params["assistant_id"]
    return ok(
        await services(request).store.assistants.modify(project(request), assistant_id, fields)
    )


async def delete(request: Request) -> Response:
    assistant_id = request.path_params["assistant_id"]
    return ok(await services(request).store.assistants.delete(project(request), assistant_id))


async def list_(request: Request) -> Response:
    return ok(
        await services(request).store.assistants.list_assistants(
            project(request), page_params(request)
        )
    )


routes = [
    Route("/assistants", create, methods=["POST"]),
    Route("/assistants", list_, methods=["GET"]),
    Route("/assistants/{assistant_id}", retrieve, methods=["GET"]),
    Route("/assistants/{assistant_id}", modify, methods=["POST"]),
    Route("/assistants/{assistant_id}", delete, methods=["DELETE"]),
]

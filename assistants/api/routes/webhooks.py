"""`/v1/webhooks`: completion webhooks, an extension of the Assistants API (OpenAI has no such
endpoint). A project registers URLs that receive a signed POST when its runs end or need action;
see `assistants.webhooks` for the signature."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.context import services
from assistants.api.http import json_body, ok, project
from assistants.api.webhook_schemas import WebhookCreate
from assistants.requests import parse


async def create(request: Request) -> Response:
    body = parse(WebhookCreate, await json_body(request))
    return ok(
        await services(request).store.webhooks.create(project(request), body.url, body.event_list())
    )


async def list_(request: Request) -> Response:
    return ok(await services(request).store.webhooks.list(project(request)))


async def delete(request: Request) -> Response:
    webhook_id = request.path_params["webhook_id"]
    return ok(await services(request).store.webhooks.delete(project(request), webhook_id))


routes = [
    Route("/webhooks", create, methods=["POST"]),
    Route("/webhooks", list_, methods=["GET"]),
    Route("/webhooks/{webhook_id}", delete, methods=["DELETE"]),
]

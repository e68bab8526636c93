"""The ASGI application: routes under `/v1`, authentication, OpenAI-shaped errors, and the
lifespan that opens the store, connects to Temporal and runs the queued-run sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistants.api.admission import AdmissionMiddleware
from assistants.api.auth import Authenticator, require_beta_header
from assistants.api.context import Services
from assistants.api.http import error_response, refuse_null_characters
from assistants.api.routes import (
    assistants,
    files,
    runs,
    threads,
    vector_store_search,
    vector_stores,
    webhooks,
)
from assistants.config import Settings
from assistants.errors import APIError, InvalidRequest, MethodNotAllowed, NotFound
from assistants.files import blob_storage_from_settings
from assistants.files.expiry import purge_forever
from assistants.health import Readiness
from assistants.ingestion_launcher import IngestionLauncher
from assistants.launcher import RunLauncher
from assistants.metrics import Metrics, prometheus_runtime
from assistants.store import Store
from assistants.streaming.notify import RunNotifier, watch
from assistants.temporal import client_metric_meter, connect

log = structlog.get_logger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class AuthMiddleware:
    """Pure ASGI (no response buffering, so SSE streams pass straight through)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self._app = app
        self._auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        try:
            project_id = await self._auth.project_for(request)
            require_beta_header(request)
            refuse_null_characters(request)
        except APIError as error:
            await error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["project_id"] = project_id
        structlog.contextvars.bind_contextvars(project_id=project_id)
        try:
            await self._app(scope, receive, send)
        finally:
            structlog.contextvars.unbind_contextvars("project_id")


class RequestIdMiddleware:
    """Every response carries `x-request-id` (as OpenAI's do): the caller's own, if it sent a
    sane one, else a new one. It is bound to every log line of the request and travels with the
    runs the request starts into the workflow's and activities' logs."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"Invalid URL ({request.method} {request.url.path})"))
    if exc.status_code == 405:
        response = error_response(
            MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}.")
        )
        response.headers["Allow"] = _allowed_methods(request)
        return response
    return error_response(InvalidRequest(str(exc.detail)))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path, for a 405's `Allow` (RFC 9110). Starlette
    reports only the first matching route's, and each of our routes has one method."""
    methods: set[str] = set()
    # The routers rewrote `root_path` on their way down; match from the application's own.
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    scope: Scope = {"type": "http", "path": request.scope["path"], "root_path": root}
    scope["method"] = request.method

    def collect(routes: list[BaseRoute], scope: Scope) -> None:
        for route in routes:
            match, child = route.matches(scope)
            if match == Match.NONE:
                continue
            if isinstance(route, Mount):
                collect(route.routes, {**scope, **child})
            elif isinstance(route, Route) and route.methods:
                methods.update(route.methods)

    collect(request.app.router.routes, scope)
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, exc_info=exc)
    return JSONResponse(
        {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
        status_code=500,
    )


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(request: Request) -> Response:
    """`/readyz` (no auth, outside /v1): store, schema and Temporal answer (assistants/health)."""
    readiness: Readiness = request.app.state.readiness
    ready, body = await readiness.report()
    return JSONResponse(
        body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"}
    )


def create_app(services: Services, *, sweep: bool = True) -> Starlette:
    """The application around ready-made services (the caller owns their lifetime)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(watch(services.store.db, services.notifier))]
        if sweep:
            tasks.append(asyncio.create_task(services.launcher.sweep_forever()))
            tasks.append(asyncio.create_task(purge_forever(services.store, services.blobs)))
            tasks.append(asyncio.create_task(services.ingestion.sweep_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # /threads/runs before /threads/{id}
    v1 = runs.routes + assistants.routes + threads.routes + webhooks.routes + files.routes
    v1 += vector_stores.routes + vector_store_search.routes
    app = Starlette(
        routes=[Route("/healthz", _health), Route("/readyz", _ready), Mount("/v1", routes=v1)],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.readiness = Readiness(services.store, services.launcher.client)
    app.add_middleware(AuthMiddleware, authenticator=Authenticator(services.store.projects))
    app.add_middleware(AdmissionMiddleware, limit=services.settings.api_max_concurrent_requests)
    app.add_middleware(RequestIdMiddleware)  # outermost: errors from auth carry the id too
    return app


async def build_services(settings: Settings) -> Services:
    store = Store.from_url(settings.resolved_database_url)
    store.chunks.cache.max_bytes = settings.search_cache_mb * 1024 * 1024
    await store.migrate()
    if settings.bootstrap_api_key:
        await store.projects.add_key("default", settings.bootstrap_api_key)
    runtime = prometheus_runtime(settings.api_host, settings.metrics_port)
    client = await connect(settings, runtime=runtime)
    return Services(
        settings=settings,
        store=store,
        launcher=RunLauncher(settings, store, client),
        notifier=RunNotifier(),
        blobs=blob_storage_from_settings(settings),
        ingestion=IngestionLauncher(settings, store, client),
        metrics=Metrics(client_metric_meter(client)),
    )

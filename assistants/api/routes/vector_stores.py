"""`/v1/vector_stores…`: vector stores, their files and file batches (search is in `search.py`).

Writes go to the store in one transaction, then the ingestion launcher starts (or cancels) the
Temporal workflows the write planned. Reads the SDK's pollers make (`files.poll` loops while a
file is `in_progress`; `file_batches.poll` while `file_counts.in_progress > 0`) are held until
the object settles (up to `poll_hold_ms`), and carry `openai-poll-after-ms`, so that a poller
whose read was not held waits that long between GETs instead of the SDK's default second.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.admission import step_aside
from assistants.api.context import Services, services
from assistants.api.http import json_body, ok, page_params, project
from assistants.api.vector_store_schemas import (
    AttributesUpdate,
    FileBatchCreate,
    JSONDict,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreModify,
    static_form,
)
from assistants.errors import InvalidRequest
from assistants.requests import dump_optional, parse
from assistants.retrieval import embedder_from_settings
from assistants.store.vector_store_files import STATUSES, FileSpec
from assistants.store.vector_stores import Embedding
from assistants.streaming.held_poll import hold_seconds, until_read_settled


def _poll_headers(svc: Services) -> dict[str, str]:
    return {"openai-poll-after-ms": str(svc.settings.poll_after_ms)}


async def _held(
    request: Request,
    svc: Services,
    read: Callable[[], Awaitable[JSONDict]],
    settled: Callable[[JSONDict], bool],
) -> JSONDict:
    """A read from the SDK's poll helpers waits, up to `poll_hold_ms`, for the object to settle
    (assistants/streaming/held_poll.py); any other read answers at once."""
    hold_s = hold_seconds(request.headers, svc.settings.poll_hold_ms)
    if not hold_s:
        return await read()
    return await until_read_settled(
        read, settled, hold_s, before_wait=lambda: step_aside(request.scope)
    )


def _status_filter(request: Request) -> str | None:
    value = request.query_params.get("filter")
    if value is None:
        return None
    if value not in STATUSES:
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: 'in_progress', 'completed', "
            "'failed', and 'cancelled'.",
            param="filter",
            code="invalid_value",
        )
    return value


# --- vector stores ------------------------------------------------------------------------------


async def create(request: Request) -> Response:
    body = parse(VectorStoreCreate, await json_body(request))
    svc, pid = services(request), project(request)
    chunking = static_form(body.chunking_strategy, param="chunking_strategy")
    embedder = embedder_from_settings(svc.settings)
    store, plan = await svc.store.vector_stores.create(
        pid,
        name=body.name,
        metadata=body.metadata or {},
        expires_after=dump_optional(body.expires_after),
        embedding=Embedding(embedder.model, embedder.dimensions),
        files=[FileSpec(f, chunking, {}) for f in dict.fromkeys(body.file_ids or [])],
        day_s=svc.settings.vector_store_day_s,
    )
    await svc.ingestion.launch(plan)
    return ok(store, _poll_headers(svc))


async def list_(request: Request) -> Response:
    svc = services(request)
    return ok(await svc.store.vector_stores.list_stores(project(request), page_params(request)))


async def retrieve(request: Request) -> Response:
    svc = services(request)
    store = await svc.store.vector_stores.get(project(request), request.path_params["vs_id"])
    return ok(store, _poll_headers(svc))


async def modify(request: Request) -> Response:
    body = parse(VectorStoreModify, await json_body(request))
    svc = services(request)
    fields = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        fields[name] = (value or {}) if name == "metadata" else dump_optional(value)
    vector_store_id = request.path_params["vs_id"]
    store, reschedule = await svc.store.vector_stores.modify(
        project(request), vector_store_id, fields, day_s=svc.settings.vector_store_day_s
    )
    if reschedule:
        await svc.ingestion.schedule_expiry(vector_store_id)
    return ok(store)


async def delete(request: Request) -> Response:
    svc = services(request)
    deleted, plan = await svc.store.vector_stores.delete(
        project(request), request.path_params["vs_id"]
    )
    await svc.ingestion.launch(plan)
    return ok(deleted)


# --- vector store files -------------------------------------------------------------------------


async def create_file(request: Request) -> Response:
    body = parse(VectorStoreFileCreate, await json_body(request))
    svc = services(request)
    spec = FileSpec(
        body.file_id,
        static_form(body.chunking_strategy, param="chunking_strategy"),
        body.attributes or {},
    )
    vector_store_file, plan = await svc.store.vector_store_files.attach(
        project(request), request.path_params["vs_id"], spec
    )
    await svc.ingestion.launch(plan)
    return ok(vector_store_file, _poll_headers(svc))


async def list_files(request: Request) -> Response:
    svc = services(request)
    return ok(
        await svc.store.vector_store_files.list_files(
            project(request),
            request.path_params["vs_id"],
            page_params(request),
            status=_status_filter(request),
        )
    )


async def retrieve_file(request: Request) -> Response:
    svc, p = services(request), request.path_params
    read = functools.partial(
        svc.store.vector_store_files.get_file, project(request), p["vs_id"], p["file_id"]
    )
    found = await _held(request, svc, read, lambda f: f["status"] != "in_progress")
    return ok(found, _poll_headers(svc))


async def update_file(request: Request) -> Response:
    body = parse(AttributesUpdate, await json_body(request))
    svc, p = services(request), request.path_params
    return ok(
        await svc.store.vector_store_files.update_attributes(
            project(request), p["vs_id"], p["file_id"], body.attributes or {}
        )
    )


async def delete_file(request: Request) -> Response:
    svc, p = services(request), request.path_params
    deleted, plan = await svc.store.vector_store_files.detach(
        project(request), p["vs_id"], p["file_id"]
    )
    await svc.ingestion.launch(plan)
    return ok(deleted)


async def file_content(request: Request) -> Response:
    svc, p = services(request), request.path_params
    return ok(
        await svc.store.vector_store_files.content(project(request), p["vs_id"], p["file_id"])
    )


# --- file batches -------------------------------------------------------------------------------


async def create_batch(request: Request) -> Response:
    body = parse(FileBatchCreate, await json_body(request))
    if body.file_ids is not None and body.files is not None:
        raise InvalidRequest(
            "Invalid request: 'file_ids' and 'files' are mutually exclusive; give one of them.",
            param="files",
            code="invalid_value",
        )
    specs: list[FileSpec]
    if body.files is not None:
        param = "files[{index}].file_id"
        specs = []
        seen: set[str] = set()
        for index, item in enumerate(body.files):
            if item.file_id in seen:
                raise InvalidRequest(
                    f"Invalid 'files[{index}].file_id': file '{item.file_id}' is listed twice.",
                    param=f"files[{index}].file_id",
                    code="invalid_value",
                )
            seen.add(item.file_id)
            chunking = static_form(
                item.chunking_strategy, param=f"files[{index}].chunking_strategy"
            )
            specs.append(FileSpec(item.file_id, chunking, item.attributes or {}))
    elif body.file_ids is not None:
        param = "file_ids[{index}]"
        chunking = static_form(body.chunking_strategy, param="chunking_strategy")
        attributes = body.attributes or {}
        specs = [FileSpec(f, chunking, attributes) for f in dict.fromkeys(body.file_ids)]
    else:
        raise InvalidRequest(
            "Missing required parameter: 'file_ids' (or 'files').", param="file_ids"
        )
    svc = services(request)
    batch, plan = await svc.store.vector_store_files.create_batch(
        project(request), request.path_params["vs_id"], specs, param=param
    )
    await svc.ingestion.launch(plan)
    return ok(batch, _poll_headers(svc))


async def retrieve_batch(request: Request) -> Response:
    svc, p = services(request), request.path_params
    read = functools.partial(
        svc.store.vector_store_files.get_batch, project(request), p["vs_id"], p["batch_id"]
    )
    batch = await _held(request, svc, read, lambda b: b["file_counts"]["in_progress"] == 0)
    return ok(batch, _poll_headers(svc))


async def cancel_batch(request: Request) -> Response:
    svc, p = services(request), request.path_params
    batch, plan = await svc.store.vector_store_files.cancel_batch(
        project(request), p["vs_id"], p["batch_id"]
    )
    await svc.ingestion.launch(plan)
    return ok(batch, _poll_headers(svc))


async def list_batch_files(request: Request) -> Response:
    svc, p = services(request), request.path_params
    return ok(
        await svc.store.vector_store_files.list_files(
            project(request),
            p["vs_id"],
            page_params(request),
            status=_status_filter(request),
            batch_id=p["batch_id"],
        )
    )


routes = [
    Route("/vector_stores", create, methods=["POST"]),
    Route("/vector_stores", list_, methods=["GET"]),
    Route("/vector_stores/{vs_id}", retrieve, methods=["GET"]),
    Route("/vector_stores/{vs_id}", modify, methods=["POST"]),
    Route("/vector_stores/{vs_id}", delete, methods=["DELETE"]),
    Route("/vector_stores/{vs_id}/files", create_file, methods=["POST"]),
    Route("/vector_stores/{vs_id}/files", list_files, methods=["GET"]),
    Route("/vector_stores/{vs_id}/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/vector_stores/{vs_id}/files/{file_id}", update_file, methods=["POST"]),
    Route("/vector_stores/{vs_id}/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/vector_stores/{vs_id}/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/vector_stores/{vs_id}/file_batches", create_batch, methods=["POST"]),
    Route("/vector_stores/{vs_id}/file_batches/{batch_id}", retrieve_batch, methods=["GET"]),
    Route("/vector_stores/{vs_id}/file_batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    Route(
        "/vector_stores/{vs_id}/file_batches/{batch_id}/files", list_batch_files, methods=["GET"]
    ),
]

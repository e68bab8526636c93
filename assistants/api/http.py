"""Request/response helpers shared by the routes: the JSON body (size-capped and checked for what
the store cannot hold), list parameters, the caller's project, and OpenAI-shaped error
responses."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assistants.api.context import services
from assistants.errors import APIError, InvalidRequest, NotFound, RequestTooLarge
from assistants.requests import Limits
from assistants.storable import find_problem, nested_too_deeply
from assistants.store.pagination import PageParams


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 once it is known to exceed `limit` bytes: from
    `Content-Length` before a byte is read, else while it streams in (chunked bodies), so an
    oversized body is never held in memory. A route that takes another kind of body (a multipart
    file upload) does not call this, and sets its own limit."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is too large: at most {limit} bytes are accepted.",
        code="request_too_large",
    )


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object a request carries, after every check that must come before anything else
    reads it: its size, its syntax, and what `assistants.storable` says the store can hold
    (nesting depth, U+0000, lone surrogates), so nothing later can fail on it."""
    raw = await read_body(request, services(request).settings.max_request_bytes)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
    except RecursionError:  # deeper than the parser itself can go
        raise InvalidRequest(nested_too_deeply()) from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, and the two below
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    problem = find_problem(body)
    if problem is not None:
        if problem.kind == "depth":
            raise InvalidRequest(problem.message)
        raise InvalidRequest(problem.message, param=problem.param, code="invalid_value")
    return body


def _finite(text: str) -> float:
    # `1e400` parses to infinity, which no response (and no PostgreSQL JSON column) can hold.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def refuse_null_characters(request: Request) -> None:
    """No id contains U+0000 (and PostgreSQL cannot even compare one): such a path names nothing,
    such a query parameter is invalid. (The server decodes paths and query strings with
    replacement characters, so no lone surrogate gets this far; the query check covers it too.)"""
    if "\x00" in request.scope["path"]:
        raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
    for name, value in request.query_params.multi_items():
        problem = find_problem({name: value})
        if problem is not None:
            raise InvalidRequest(problem.message, param=problem.param, code="invalid_value")


def page_params(request: Request, *, default_limit: int = 20, max_limit: int = 100) -> PageParams:
    """`limit`, `order`, `after`, `before` (files: `limit` up to 10,000, by default 10,000)."""
    query = request.query_params
    raw_limit = query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer, but got '{raw_limit}' instead.",
                param="limit",
                code="invalid_type",
            ) from None
        if limit < 1:
            raise InvalidRequest(
                "Invalid 'limit': integer below minimum value. Expected a value >= 1, "
                f"but got {limit} instead.",
                param="limit",
                code="integer_below_min_value",
            )
        if limit > max_limit:
            raise InvalidRequest(
                f"Invalid 'limit': integer above maximum value. Expected a value <= {max_limit}, "
                f"but got {limit} instead.",
                param="limit",
                code="integer_above_max_value",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return PageParams(
        limit=limit,
        order="asc" if order == "asc" else "desc",
        after=query.get("after") or None,
        before=query.get("before") or None,
    )


def limits(request: Request) -> Limits:
    """The configured request limits, for `schemas.parse`."""
    return Limits(max_message_chars=services(request).settings.max_message_chars)


def project(request: Request) -> str:
    return str(request.state.project_id)


def ok(payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(payload, headers=headers)


def error_response(error: APIError) -> Response:
    # `x-should-retry: false` stops the SDK from retrying answers that retrying cannot change.
    headers = {"x-should-retry": "false"} if error.status_code < 500 else None
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)

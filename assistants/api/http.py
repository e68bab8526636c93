"""Request/response helpers shared by the routes: the JSON body, list parameters, the caller's
project, and OpenAI-shaped error responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assistants.errors import APIError, InvalidRequest
from assistants.store.pagination import PageParams


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def page_params(request: Request) -> PageParams:
    query = request.query_params
    raw_limit = query.get("limit")
    limit = 20
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
        if limit > 100:
            raise InvalidRequest(
                "Invalid 'limit': integer above maximum value. Expected a value <= 100, "
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


def project(request: Request) -> str:
    return str(request.state.project_id)


def ok(payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(payload, headers=headers)


def error_response(error: APIError) -> Response:
    # `x-should-retry: false` stops the SDK from retrying answers that retrying cannot change.
    headers = {"x-should-retry": "false"} if error.status_code < 500 else None
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)

"""Request/response helpers shared by the routes: the JSON body, list parameters, the caller's
project, and OpenAI-shaped error responses."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from assistants.errors import APIError, InvalidRequest, NotFound
from assistants.store.pagination import PageParams


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, and the two below
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    where = _null_character_at(body)
    if where is not None:
        raise InvalidRequest(
            f"Invalid '{where}': string contains a null character (\\u0000).",
            param=where,
            code="invalid_value",
        )
    return body


def _finite(text: str) -> float:
    # `1e400` parses to infinity, which no response (and no PostgreSQL JSON column) can hold.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN and Infinity; JSON does not


def _null_character_at(value: Any, path: str = "") -> str | None:
    """The parameter path of the first string (or key) holding U+0000, which PostgreSQL text
    cannot store: refused on every backend alike."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else key
            found = inner if "\x00" in key else _null_character_at(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _null_character_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def refuse_null_characters(request: Request) -> None:
    """No id contains U+0000 (and PostgreSQL cannot even compare one): such a path names nothing,
    such a query parameter is invalid."""
    if "\x00" in request.url.path:
        raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest(
                f"Invalid '{name}': string contains a null character (\\u0000).",
                param=name,
                code="invalid_value",
            )


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

"""Request bodies of `/v1/vector_stores…`, validated like every other body (`schemas.parse`):
unknown fields, wrong JSON types and the spec's limits are a 400 naming the parameter.

Chunking strategies are the shared `ChunkingStrategy` (auto, or static with 100 <= max <= 4096
and 0 <= overlap <= max/2); `static_form` turns one into what a vector-store file reports (OpenAI
reports `auto` as static 800/400).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from assistants.requests import ChunkingStrategy, Metadata, Strict
from assistants.retrieval import static_chunking_strategy

JSONDict = dict[str, Any]


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return json.dumps(value)


def _check_attributes(value: JSONDict) -> JSONDict:
    """The spec's `VectorStoreFileAttributes`: at most 16 keys of at most 64 characters; values
    are strings (at most 512 characters), numbers or booleans."""
    if len(value) > 16:
        raise ValueError(
            "too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(value)} properties instead."
        )
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(
                f"key '{key[:20]}…' is too long. Expected a key with at most 64 characters, "
                f"but got a key with {len(key)} characters instead."
            )
        if isinstance(item, str):
            if len(item) > 512:
                raise ValueError(
                    f"value of '{key}' is too long. Expected a string with at most 512 "
                    f"characters, but got a string with {len(item)} characters instead."
                )
        elif not isinstance(item, bool | int | float):
            raise ValueError(
                f"value of '{key}' must be a string, a number or a boolean, but got "
                f"{_json_type(item)}."
            )
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_check_attributes)]


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class VectorStoreCreate(Strict):
    file_ids: Annotated[list[str], Field(max_length=500)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None  # accepted; not returned
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class VectorStoreModify(Strict):
    name: Annotated[str, Field(max_length=256)] | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class VectorStoreFileCreate(Strict):
    file_id: Annotated[str, Field(min_length=1)]
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes | None = None


class FileBatchCreate(Strict):
    """Either `file_ids` (with batch-wide `attributes`/`chunking_strategy`) or `files` (each with
    its own); the route enforces that exactly one is given."""

    file_ids: Annotated[list[str], Field(min_length=1, max_length=2000)] | None = None
    files: Annotated[list[VectorStoreFileCreate], Field(min_length=1, max_length=2000)] | None = (
        None
    )
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes | None = None


class AttributesUpdate(Strict):
    attributes: Attributes | None


def static_form(strategy: ChunkingStrategy | None, *, param: str) -> JSONDict:
    raw = strategy.model_dump() if strategy is not None else None
    return static_chunking_strategy(raw, param=param)

"""`POST /v1/vector_stores/{vector_store_id}/search`: hybrid search over a store's files.

The body is validated first (so bad input writes nothing), then the store is resolved (another
project's store is a 404, an expired one a 400; searching it counts as activity for its expiry),
the queries are embedded with the model the store was built with, and the chunk store ranks the
visible chunks (store/chunks.py). `rewrite_query` is accepted; there is no rewrite model, so the
queries are searched, and echoed in `search_query`, unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assistants.api.context import services
from assistants.api.http import json_body, ok, project
from assistants.errors import APIError, InvalidRequest, ServiceUnavailable
from assistants.requests import Strict, parse
from assistants.retrieval import embedder_from_settings
from assistants.retrieval.embeddings import EmbeddingError
from assistants.store.ranking import configured_weights
from assistants.store.search_filters import parse_filter

MAX_QUERIES = 10
MAX_QUERY_CHARS = 10_000


class SearchRankingOptions(Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class SearchRequest(Strict):
    query: str | list[str]
    rewrite_query: bool = False
    max_num_results: int = Field(default=10, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: SearchRankingOptions | None = None


def _queries(query: str | list[str]) -> list[str]:
    if isinstance(query, str):
        items, params = [query], ["query"]
    else:
        if not query:
            raise InvalidRequest(
                "Invalid 'query': array too short. Expected an array with minimum length 1, "
                "but got an array with length 0 instead.",
                param="query",
                code="array_below_min_length",
            )
        if len(query) > MAX_QUERIES:
            raise InvalidRequest(
                f"Invalid 'query': array too long. Expected an array with maximum length "
                f"{MAX_QUERIES}, but got an array with length {len(query)} instead.",
                param="query",
                code="array_above_max_length",
            )
        items, params = query, [f"query[{i}]" for i in range(len(query))]
    for item, param in zip(items, params, strict=True):
        if not item.strip():
            raise InvalidRequest(
                f"Invalid '{param}': the search query must not be empty.",
                param=param,
                code="invalid_value",
            )
        if len(item) > MAX_QUERY_CHARS:
            raise InvalidRequest(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{MAX_QUERY_CHARS}, but got a string with length {len(item)} instead.",
                param=param,
                code="string_above_max_length",
            )
    return items


async def search(request: Request) -> Response:
    body = parse(SearchRequest, await json_body(request))
    queries = _queries(body.query)
    flt = parse_filter(body.filters) if body.filters is not None else None
    options = body.ranking_options or SearchRankingOptions()
    svc = services(request)
    project_id = project(request)
    (target,) = await svc.store.vector_stores.get_searchable(
        project_id, [request.path_params["vector_store_id"]]
    )
    embedder = embedder_from_settings(svc.settings)
    if (embedder.model, embedder.dimensions) != (target.embedding_model, target.embedding_dims):
        raise InvalidRequest(
            f"Vector store {target.id} was built with the embedding model "
            f"'{target.embedding_model}' ({target.embedding_dims} dimensions), but this server "
            f"embeds with '{embedder.model}' ({embedder.dimensions} dimensions): it cannot be "
            "searched until that model is configured again (ASSISTANTS_EMBEDDINGS_*).",
            param="vector_store_id",
            code="embedding_model_mismatch",
        )
    try:
        vectors = await embedder.embed(queries)
    except EmbeddingError as error:
        message = f"The embedding service failed to embed the query: {error.message}"
        raise (ServiceUnavailable(message) if error.retryable else APIError(message)) from None
    settings = svc.settings
    weights = configured_weights(settings.search_embedding_weight, settings.search_text_weight)
    hits = await svc.store.chunks.search(
        project_id,
        [target.id],
        queries,
        vectors,
        filters=flt,
        max_num_results=body.max_num_results,
        score_threshold=options.score_threshold,
        ranker=options.ranker,
        weights=weights,
    )
    return ok(
        {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": [
                {
                    "file_id": hit.file_id,
                    "filename": hit.filename,
                    "score": hit.score,
                    "attributes": hit.attributes,
                    "content": [{"type": "text", "text": hit.text}],
                }
                for hit in hits
            ],
            "has_more": False,
            "next_page": None,
        }
    )


routes = [Route("/vector_stores/{vector_store_id}/search", search, methods=["POST"])]

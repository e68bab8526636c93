"""Parsing, chunking and embedding of uploaded files: the pure library under ingestion and search.

Nothing here touches the store or Temporal: the ingestion activities call `parse_document`,
`chunk_document` and an `Embedder`; the search route embeds queries with the same `Embedder`.
"""

from assistants.retrieval.chunking import (
    AUTO_MAX_TOKENS,
    AUTO_OVERLAP_TOKENS,
    Chunk,
    chunk_document,
    count_tokens,
    static_chunking_strategy,
    validate_chunking,
)
from assistants.retrieval.embeddings import (
    LOCAL_DIMENSIONS,
    LOCAL_MODEL,
    Embedder,
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    embedder_from_settings,
)
from assistants.retrieval.errors import IngestionError, InvalidFile, UnsupportedFile
from assistants.retrieval.parsing import ParsedDocument, parse_document

__all__ = [
    "AUTO_MAX_TOKENS",
    "AUTO_OVERLAP_TOKENS",
    "LOCAL_DIMENSIONS",
    "LOCAL_MODEL",
    "Chunk",
    "Embedder",
    "EmbeddingError",
    "IngestionError",
    "InvalidFile",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "ParsedDocument",
    "UnsupportedFile",
    "chunk_document",
    "count_tokens",
    "embedder_from_settings",
    "parse_document",
    "static_chunking_strategy",
    "validate_chunking",
]

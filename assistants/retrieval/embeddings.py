"""Text -> unit vectors, from a configured OpenAI-compatible endpoint or an offline model.

Why it exists: ingestion embeds every chunk and search embeds every query, with the same model
(each vector store records `embedding_model`/`embedding_dims` at creation and is only ever
queried with that pair). Both callers see one small protocol, `Embedder`, and get float32
`(n, dims)` arrays with unit rows, so cosine similarity is a dot product.

- `OpenAIEmbedder` calls `POST {base}/embeddings` with the `openai` SDK built with
  `max_retries=0`: Temporal owns retries (one failed request is one failed activity attempt).
  Failures become `EmbeddingError` classified the way the SDK itself would retry (408, 409, 429,
  5xx, connection errors: retryable, with `Retry-After` as a hint for the next attempt's delay);
  other 4xx are final. `encoding_format="float"` is explicit because several OpenAI-compatible
  servers do not implement the SDK's default base64.
- `LocalEmbedder` is WordLlama `l2_supercat_256`, whose 16 MB of weights ship inside the
  `wordllama` wheel: it works offline on a fresh machine (`make dev`, CI). Its loader would try to
  download the tokenizer (it looks in the wrong directory, and importing the package configures
  root logging), so the two files are loaded directly and the model's average pooling (a few
  lines of numpy) is done here. The model loads once per process, lazily, and runs in a thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import weakref
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import numpy as np
import numpy.typing as npt
import openai

from assistants.backends.retry_after import retry_after
from assistants.config import OPENAI_EMBEDDING_DIMENSIONS, Settings

if TYPE_CHECKING:
    from tokenizers import Tokenizer

LOCAL_MODEL = "local/wordllama-l2-256"
LOCAL_DIMENSIONS = 256

RETRYABLE_STATUS = frozenset({408, 409, 429})

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Embeds texts as float32 `(len(texts), dimensions)` arrays with L2-normalised rows."""

    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> Vectors: ...


class EmbeddingError(Exception):
    """An embeddings request failed. `retryable` says whether the same request may succeed
    later; `retry_after_s` is the server's `Retry-After`, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def _normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)  # a zero vector (empty text) stays zero
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


# --- offline model ----------------------------------------------------------------------------


class _WordLlama:
    """WordLlama inference: token embeddings averaged over the text, then L2-normalised."""

    def __init__(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        package = _wordllama_dir()
        tokenizer = Tokenizer.from_file(
            str(package / "tokenizers/l2_supercat_tokenizer_config.json")
        )
        tokenizer.no_truncation()
        tokenizer.no_padding()
        weights = load_file(str(package / "weights/l2_supercat_256.safetensors"))
        self.tokenizer: Tokenizer = tokenizer
        self.table: Vectors = np.ascontiguousarray(weights["embedding.weight"], dtype=np.float32)
        if self.table.shape[1] != LOCAL_DIMENSIONS:  # pragma: no cover - a changed wheel
            raise RuntimeError(f"unexpected WordLlama dimensions {self.table.shape[1]}")

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), LOCAL_DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        last = self.table.shape[0] - 1
        for row, encoding in enumerate(encodings):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            if ids.size:
                # Per text, not one big gather: a (tokens, 256) block stays in cache; gathering
                # every token of a batch at once costs ~40x more here.
                np.clip(ids, 0, last, out=ids)
                out[row] = self.table[ids].mean(axis=0)
        return _normalise(out)


def _wordllama_dir() -> Path:
    # find_spec locates the installed package without importing it (its __init__ configures
    # logging and pulls in the downloader).
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'wordllama' package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


_MODEL_LOCK = threading.Lock()
_MODEL: _WordLlama | None = None


def _local_model() -> _WordLlama:
    global _MODEL
    with _MODEL_LOCK:  # loaded once per process, whichever thread gets there first
        if _MODEL is None:
            _MODEL = _WordLlama()
        return _MODEL


class LocalEmbedder:
    """The built-in offline model (`local/wordllama-l2-256`, 256 dims)."""

    model: str = LOCAL_MODEL
    dimensions: int = LOCAL_DIMENSIONS

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Embed on the calling thread (for scripts and benchmarks)."""
        return _local_model().embed(texts)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        # numpy and the Rust tokenizer release the GIL for most of the work; a thread keeps the
        # event loop (heartbeats, other activities) responsive.
        return await anyio.to_thread.run_sync(self.embed_sync, list(texts))


# --- OpenAI-compatible endpoint ---------------------------------------------------------------


class OpenAIEmbedder:
    """A configured OpenAI-compatible `/v1/embeddings` endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        dimensions: int | None = None,
        batch_inputs: int = 256,
        batch_tokens: int = 100_000,
        concurrency: int = 4,
        timeout_s: float = 60.0,
    ) -> None:
        resolved = dimensions or OPENAI_EMBEDDING_DIMENSIONS.get(model)
        if resolved is None:
            raise ValueError(
                f"The vector size of embedding model '{model}' is unknown: "
                "set ASSISTANTS_EMBEDDINGS_DIMENSIONS."
            )
        self.model = model
        self.dimensions: int = resolved
        # `dimensions` is a request parameter only text-embedding-3 models accept (OpenAI's API
        # reference); for other models the setting only declares the size.
        self._send_dimensions = dimensions is not None and model.startswith("text-embedding-3")
        self.batch_inputs = batch_inputs
        self.batch_tokens = batch_tokens
        self._base_url = base_url
        self._api_key = api_key or "unused"
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    def _client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        # One HTTP client and one concurrency limit per event loop: the embedder is cached per
        # process, and an httpx connection pool must not be shared across loops.
        loop = asyncio.get_running_loop()
        pair = self._per_loop.get(loop)
        if pair is None:
            client = openai.AsyncOpenAI(
                base_url=self._base_url,
                api_key=self._api_key,
                max_retries=0,  # Temporal retries the activity; the client never does
                timeout=self._timeout_s,
            )
            pair = self._per_loop[loop] = (client, asyncio.Semaphore(self._concurrency))
        return pair

    def _batches(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        from assistants.retrieval.chunking import count_tokens

        batches: list[tuple[int, int]] = []
        start, tokens = 0, 0
        for i, text in enumerate(texts):
            n = count_tokens(text)
            if i > start and (i - start >= self.batch_inputs or tokens + n > self.batch_tokens):
                batches.append((start, i))
                start, tokens = i, 0
            tokens += n
        if start < len(texts):
            batches.append((start, len(texts)))
        return batches

    async def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        batches = self._batches(texts)
        if len(batches) == 1:
            await self._embed_batch(texts, 0, len(texts), out)
            return out
        try:
            async with anyio.create_task_group() as group:
                for start, end in batches:
                    group.start_soon(self._embed_batch, texts, start, end, out)
        except BaseExceptionGroup as group_error:
            # The first failure cancelled the other batches; report one EmbeddingError (a final
            # one if any, else the one asking for the longest wait) rather than a group.
            errors = [e for e in _leaves(group_error) if isinstance(e, EmbeddingError)]
            if not errors:
                raise
            errors.sort(key=lambda e: (e.retryable, -(e.retry_after_s or 0.0)))
            raise errors[0] from group_error
        return out

    async def _embed_batch(self, texts: Sequence[str], start: int, end: int, out: Vectors) -> None:
        # An empty string is a 400 at OpenAI; a single space embeds as (nearly) nothing.
        batch = [text if text else " " for text in texts[start:end]]
        client, semaphore = self._client()
        async with semaphore:
            try:
                if self._send_dimensions:
                    response = await client.embeddings.create(
                        model=self.model,
                        input=batch,
                        encoding_format="float",
                        dimensions=self.dimensions,
                    )
                else:
                    response = await client.embeddings.create(
                        model=self.model, input=batch, encoding_format="float"
                    )
            except openai.APIStatusError as error:
                status = error.status_code
                raise EmbeddingError(
                    f"The embeddings endpoint returned {status}: {error.message}",
                    status=status,
                    retryable=status in RETRYABLE_STATUS or status >= 500,
                    retry_after_s=retry_after(error.response.headers),
                ) from error
            except openai.APIConnectionError as error:  # includes timeouts
                raise EmbeddingError(
                    f"The embeddings endpoint could not be reached: {error}",
                    retryable=True,
                ) from error
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise EmbeddingError(
                f"The embeddings endpoint returned {len(data)} vectors for {len(batch)} inputs.",
                retryable=True,
            )
        try:
            vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise EmbeddingError(
                "The embeddings endpoint returned malformed vectors.", retryable=False
            ) from error
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise EmbeddingError(
                f"The embeddings endpoint returned vectors of size {vectors.shape[-1]}, "
                f"expected {self.dimensions} (ASSISTANTS_EMBEDDINGS_DIMENSIONS).",
                retryable=False,
            )
        out[start:end] = _normalise(vectors)

    async def close(self) -> None:
        """Close this event loop's HTTP client (if it made one)."""
        pair = self._per_loop.pop(asyncio.get_running_loop(), None)
        if pair is not None:
            await pair[0].close()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves


# --- selection --------------------------------------------------------------------------------


def embedder_from_settings(settings: Settings) -> Embedder:
    """The configured endpoint when `ASSISTANTS_EMBEDDINGS_BASE_URL` is set, else the offline
    model. Cached per distinct configuration, so every caller in a process shares one client
    (and the local model is loaded once)."""
    return _embedder(
        settings.embeddings_base_url,
        settings.embeddings_api_key,
        settings.embeddings_model,
        settings.embeddings_dimensions,
        settings.embeddings_batch_inputs,
        settings.embeddings_batch_tokens,
        settings.embeddings_concurrency,
        settings.embeddings_timeout_s,
    )


@lru_cache(maxsize=8)
def _embedder(
    base_url: str | None,
    api_key: str | None,
    model: str,
    dimensions: int | None,
    batch_inputs: int,
    batch_tokens: int,
    concurrency: int,
    timeout_s: float,
) -> Embedder:
    if not base_url:
        return LocalEmbedder()
    return OpenAIEmbedder(
        base_url=base_url,
        api_key=api_key,
        model=model,
        dimensions=dimensions,
        batch_inputs=batch_inputs,
        batch_tokens=batch_tokens,
        concurrency=concurrency,
        timeout_s=timeout_s,
    )

"""Embeddings: the offline WordLlama model (real weights from the wheel) and the configured
OpenAI-compatible endpoint (the scripted model server's `/v1/embeddings` on loopback)."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import openai
import pytest

from assistants.config import Settings
from assistants.retrieval import (
    LOCAL_DIMENSIONS,
    LOCAL_MODEL,
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    count_tokens,
    embedder_from_settings,
)
from assistants.retrieval.embeddings import _local_model, _wordllama_dir
from assistants.testing.scripted_model import EmbeddingReply, ScriptedModel

# --- the offline model ------------------------------------------------------------------------


async def test_local_vectors_are_unit_float32_and_deterministic() -> None:
    embedder = LocalEmbedder()
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by twelve percent.", "x"]
    first = await embedder.embed(texts)
    second = await embedder.embed(list(reversed(texts)))
    assert embedder.model == LOCAL_MODEL == "local/wordllama-l2-256"
    assert embedder.dimensions == LOCAL_DIMENSIONS == 256
    assert first.dtype == np.float32 and first.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, second[::-1], atol=1e-6)
    assert float(first[0] @ first[1]) < 0.99  # different texts, different vectors


async def test_local_empty_inputs() -> None:
    embedder = LocalEmbedder()
    assert (await embedder.embed([])).shape == (0, 256)
    vectors = await embedder.embed(["", "hello"])
    assert not vectors[0].any()  # no tokens: the zero vector (similar to nothing)
    assert abs(float(np.linalg.norm(vectors[1])) - 1.0) < 1e-5


def test_local_model_loads_once_per_process() -> None:
    assert _local_model() is _local_model()


def test_local_model_matches_wordllamas_own_inference() -> None:
    # Our loader bypasses WordLlama.load() (it would try the network); the vectors must be the
    # ones the library itself computes from the same two files.
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from wordllama.inference import WordLlamaInference  # configures root logging on import
    finally:
        root.handlers[:], root.level = handlers, level
    package = _wordllama_dir()
    reference = WordLlamaInference(
        load_file(str(package / "weights/l2_supercat_256.safetensors"))["embedding.weight"],
        Tokenizer.from_file(str(package / "tokenizers/l2_supercat_tokenizer_config.json")),
    )
    texts = ["Durable workflows survive crashes.", "short", "Ünïcödé and emoji 🚀 text " * 40]
    expected = reference.embed(texts, norm=True)
    np.testing.assert_allclose(LocalEmbedder().embed_sync(texts), expected, atol=1e-5)


FACT = (
    "Maintenance note: the backup diesel generator behind the north warehouse is load-tested "
    "on the first Monday of every month at six in the morning."
)
DISTRACTORS = [
    "The cafeteria menu rotates weekly and features vegetarian options every Wednesday.",
    "Employees must renew their parking permits at the front desk before the end of March.",
    "Our quarterly revenue rose by eleven percent, driven mostly by subscription renewals.",
    "The library on the third floor lends laptops for up to five working days.",
    "Annual leave requests should be submitted through the HR portal two weeks in advance.",
    "The marketing team is planning a spring campaign focused on social media video.",
    "Visitors need a badge from reception and must be escorted in restricted areas.",
    "The new coffee machine accepts both contactless cards and the company app.",
    "Quarterly security training covers phishing, password hygiene and safe browsing.",
    "The board approved a budget increase for the research lab's cloud computing costs.",
    "Fire drills happen twice a year; assemble in the car park by the east gate.",
    "Printer toner can be ordered from the supplies page of the intranet.",
]


async def test_local_semantic_sanity_planted_fact_ranks_first() -> None:
    embedder = LocalEmbedder()
    documents = [*DISTRACTORS[:6], FACT, *DISTRACTORS[6:]]
    doc_vectors = await embedder.embed(documents)
    for query in (
        "When is the emergency power generator tested?",
        "how often do they check the standby generator",
    ):
        [query_vector] = await embedder.embed([query])
        scores = doc_vectors @ query_vector
        assert int(np.argmax(scores)) == documents.index(FACT), query


async def test_local_embedding_runs_off_the_event_loop() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    texts = [f"{FACT} variant {i}. " * 40 for i in range(300)]
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    vectors = await LocalEmbedder().embed(texts)
    stop.set()
    await task
    assert vectors.shape == (300, 256)
    assert ticks > before + 1  # the loop kept running while the batch was embedded


# --- the configured endpoint --------------------------------------------------------------------


def _endpoint(server: ScriptedModel, **kwargs: object) -> OpenAIEmbedder:
    options: dict[str, object] = {"base_url": server.base_url, "api_key": "sk-test"}
    options.update(kwargs)
    options.setdefault("model", "scripted-embed")
    options.setdefault("dimensions", 64)
    return OpenAIEmbedder(**options)  # type: ignore[arg-type]


async def test_endpoint_success_batches_and_normalises(model: ScriptedModel) -> None:
    embedder = _endpoint(model, batch_inputs=3)
    texts = [f"document number {i} about harbours" for i in range(7)]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (7, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    requests = model.embedding_requests
    assert [len(r["input"]) for r in sorted(requests, key=lambda r: r["input"][0])] == [3, 3, 1]
    assert all(r["encoding_format"] == "float" for r in requests)
    assert all(r["model"] == "scripted-embed" for r in requests)
    assert all("dimensions" not in r for r in requests)  # not a text-embedding-3 model
    # Row i is text i, whatever order the concurrent batches finished in.
    [again] = await embedder.embed([texts[5]])
    np.testing.assert_allclose(vectors[5], again, atol=1e-6)
    await embedder.close()


async def test_endpoint_batches_by_tokens(model: ScriptedModel) -> None:
    text = "harbour " * 500
    tokens = count_tokens(text)
    assert 500 <= tokens < 510
    embedder = _endpoint(model, batch_inputs=100, batch_tokens=int(tokens * 2.5))
    await embedder.embed([text] * 5)
    assert sorted(len(r["input"]) for r in model.embedding_requests) == [1, 2, 2]
    await embedder.close()


async def test_endpoint_sends_dimensions_to_text_embedding_3(model: ScriptedModel) -> None:
    embedder = _endpoint(model, model="text-embedding-3-small", dimensions=32)
    vectors = await embedder.embed(["shortened vectors"])
    assert vectors.shape == (1, 32)
    assert model.embedding_requests[0]["dimensions"] == 32
    await embedder.close()


async def test_endpoint_empty_string_is_sent_as_a_space(model: ScriptedModel) -> None:
    embedder = _endpoint(model)
    vectors = await embedder.embed(["", "text"])
    assert vectors.shape == (2, 64)
    assert model.embedding_requests[0]["input"] == [" ", "text"]
    assert (await embedder.embed([])).shape == (0, 64)
    await embedder.close()


async def test_endpoint_429_is_retryable_with_retry_after(model: ScriptedModel) -> None:
    model.enqueue_embeddings(EmbeddingReply(status=429, retry_after=2.5, error_message="slow down"))
    embedder = _endpoint(model)
    with pytest.raises(EmbeddingError) as info:
        await embedder.embed(["a text"])
    error = info.value
    assert (error.status, error.retryable, error.retry_after_s) == (429, True, 2.5)
    assert "slow down" in error.message
    assert len(model.embedding_requests) == 1  # the client itself never retries
    await embedder.close()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (408, True), (400, False), (401, False), (404, False)],
)
async def test_endpoint_status_classification(
    model: ScriptedModel, status: int, retryable: bool
) -> None:
    model.enqueue_embeddings(EmbeddingReply(status=status))
    embedder = _endpoint(model)
    with pytest.raises(EmbeddingError) as info:
        await embedder.embed(["a text"])
    assert (info.value.status, info.value.retryable) == (status, retryable)
    assert info.value.retry_after_s is None
    assert len(model.embedding_requests) == 1
    await embedder.close()


async def test_endpoint_unreachable_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = OpenAIEmbedder(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=None, model="m", dimensions=8
    )
    with pytest.raises(EmbeddingError) as info:
        await embedder.embed(["a text"])
    assert info.value.retryable and info.value.status is None
    await embedder.close()


async def test_endpoint_wrong_vector_size_is_final(model: ScriptedModel) -> None:
    model.embedding_dimensions = 48
    embedder = _endpoint(model, dimensions=64)
    with pytest.raises(EmbeddingError) as info:
        await embedder.embed(["a text"])
    assert not info.value.retryable
    assert "48" in info.value.message and "64" in info.value.message
    await embedder.close()


def test_unknown_model_needs_dimensions(model: ScriptedModel) -> None:
    with pytest.raises(ValueError, match="ASSISTANTS_EMBEDDINGS_DIMENSIONS"):
        OpenAIEmbedder(base_url=model.base_url, api_key=None, model="nomic-embed-text")
    known = OpenAIEmbedder(base_url=model.base_url, api_key=None, model="text-embedding-3-large")
    assert known.dimensions == 3072


# --- selection from settings --------------------------------------------------------------------


def test_embedder_from_settings(model: ScriptedModel) -> None:
    local = embedder_from_settings(Settings(embeddings_base_url=None))
    assert isinstance(local, LocalEmbedder)
    assert embedder_from_settings(Settings(embeddings_base_url=None)) is local  # cached
    settings = Settings(
        embeddings_base_url=model.base_url,
        embeddings_model="text-embedding-3-small",
        embeddings_batch_inputs=16,
    )
    remote = embedder_from_settings(settings)
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.model, remote.dimensions, remote.batch_inputs) == (
        "text-embedding-3-small",
        1536,
        16,
    )
    assert embedder_from_settings(settings) is remote


def test_settings_refuse_an_endpoint_model_of_unknown_size(model: ScriptedModel) -> None:
    with pytest.raises(ValueError, match="ASSISTANTS_EMBEDDINGS_DIMENSIONS"):
        Settings(embeddings_base_url=model.base_url, embeddings_model="nomic-embed-text")
    settings = Settings(
        embeddings_base_url=model.base_url,
        embeddings_model="nomic-embed-text",
        embeddings_dimensions=768,
    )
    assert embedder_from_settings(settings).dimensions == 768


async def test_embedder_from_settings_embeds_through_the_endpoint(model: ScriptedModel) -> None:
    embedder = embedder_from_settings(
        Settings(
            embeddings_base_url=model.base_url,
            embeddings_model="scripted-embed",
            embeddings_dimensions=64,
        )
    )
    vectors = await embedder.embed(["one", "two"])
    assert vectors.shape == (2, 64)
    assert model.embedding_requests[-1]["input"] == ["one", "two"]


async def test_endpoint_failure_in_one_of_several_batches(model: ScriptedModel) -> None:
    model.enqueue_embeddings(EmbeddingReply(), EmbeddingReply(status=429, retry_after=1))
    embedder = _endpoint(model, batch_inputs=1, concurrency=1)
    with pytest.raises(EmbeddingError) as info:  # one error, not an exception group
        await embedder.embed(["one", "two", "three"])
    assert (info.value.status, info.value.retryable, info.value.retry_after_s) == (429, True, 1.0)
    assert len(model.embedding_requests) == 2  # the failure stopped the remaining batch
    await embedder.close()


def test_scripted_embeddings_speak_the_sdks_default_base64(model: ScriptedModel) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    with openai.OpenAI(base_url=model.base_url, api_key="x", max_retries=0) as client:
        response = client.embeddings.create(model="m", input=["copper kettle", "copper kettle"])
        floats = client.embeddings.create(
            model="m", input="copper kettle", encoding_format="float", dimensions=16
        )
    first, second = (np.asarray(item.embedding) for item in response.data)
    assert first.shape == (64,) and np.allclose(first, second)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-6
    assert len(floats.data[0].embedding) == 16
    assert response.usage.prompt_tokens == 4

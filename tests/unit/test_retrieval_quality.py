"""Fusion must not lose to either of its halves: the retrieval benchmark's method
(bench/retrieval_quality.py) on a tiny real corpus, the docstrings of a few stdlib modules,
indexed through the real parser, chunker, offline embedder and chunk store on SQLite.

Why it exists: the RRF constant and the default weights were tuned on the benchmark; a later
change to ranking, lexical query building or candidate depth that makes hybrid search worse than
plain full-text or plain vector search fails here in seconds, not in a benchmark nobody reruns.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from assistants.retrieval.embeddings import LocalEmbedder
from assistants.testing.postgres import PostgresCluster
from bench.retrieval_quality import (
    LEXICAL,
    VECTOR,
    Document,
    build_index,
    configured_weights,
    evaluate,
    score_ranking,
    stdlib_documents,
)

_databases = itertools.count()
# Reference-heavy modules whose docstrings have a summary line and a body.
MODULES = ("argparse", "collections", "email", "json", "logging", "pathlib", "shutil", "tarfile")


def _url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'quality.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"quality_{next(_databases)}_{int(time.time())}")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_lexical_ranking_weighs_rare_terms(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """BM25 (FTS5) and the IDF-weighted `ts_rank_cd` (PostgreSQL): the only chunk holding the
    rare query word beats chunks that repeat a common one (plain `ts_rank_cd` has no IDF)."""
    filler = "Return the value of the object when the object is ready. " * 3
    documents = [
        Document(f"file-common{i:03d}", f"common{i}", f"Note {i}. {filler}", "unused")
        for i in range(40)
    ]
    documents.append(Document("file-rare", "rare", "The zeppelin hangar opens at dawn.", "unused"))
    index = await build_index(_url(request, backend, tmp_path), documents)
    try:
        query = "return the zeppelin object value"
        hits = await index.store.chunks.search(
            index.project_id,
            [index.vector_store_id],
            [query],
            LocalEmbedder().embed_sync([query]),
            max_num_results=5,
            weights=LEXICAL,
        )
    finally:
        await index.store.close()
    assert hits[0].file_id == "file-rare"


def test_known_item_metrics() -> None:
    assert score_ranking(["a", "b"], "a") == (1.0, 1.0)
    ndcg, recall = score_ranking(["x", "x", "b", "a"], "a")  # repeated files count once: rank 3
    assert ndcg == pytest.approx(0.5) and recall == 1.0
    assert score_ranking([str(i) for i in range(15)], "12") == (0.0, 1.0)  # rank 13
    assert score_ranking(["a"], "z") == (0.0, 0.0)


def test_summaries_are_held_out_of_their_documents() -> None:
    documents = stdlib_documents(MODULES)
    assert len(documents) >= 150
    assert len({d.id for d in documents}) == len(documents)
    assert all(d.query not in " ".join(d.text.split()) for d in documents)


async def test_hybrid_beats_lexical_and_vector_alone(tmp_path: Path) -> None:
    documents = stdlib_documents(MODULES)
    index = await build_index(f"sqlite:///{tmp_path / 'quality.db'}", documents)
    try:
        queries = list(range(len(documents)))
        vectors = LocalEmbedder().embed_sync([d.query for d in documents])
        lexical = await evaluate(index, documents, queries, vectors, LEXICAL)
        vector = await evaluate(index, documents, queries, vectors, VECTOR)
        hybrid = await evaluate(index, documents, queries, vectors, configured_weights())
    finally:
        await index.store.close()
    assert 0.3 < vector.ndcg_at_10 < 1.0 and 0.3 < lexical.ndcg_at_10 < 1.0  # a real contest
    assert hybrid.ndcg_at_10 >= max(lexical.ndcg_at_10, vector.ndcg_at_10)
    assert hybrid.recall_at_20 >= max(lexical.recall_at_20, vector.recall_at_20)

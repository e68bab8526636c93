"""`vector_stores.search` latency on 10k and 100k chunks, on SQLite and on PostgreSQL + pgvector.

    .venv/bin/python -m bench.search [--sizes 10000,100000] [--backends sqlite,pgvector,postgres]
                                     [--queries 200]

The corpus is real English prose: the docstrings of the Python standard library and of the
installed packages, cut into overlapping windows of 120-220 words (one chunk each, 100 chunks per
file), embedded with the offline model the server uses (WordLlama, 256 dimensions), and written
with the chunk store's own `insert_chunks` (files and vector-store-file rows as `completed`).

For each backend and size, in the same run:

- **end to end**: `client.vector_stores.search(...)` through the real `openai` SDK against a
  `durable-assistants api` process (HTTP, auth, store lookup + `last_active_at`, query embedding,
  hybrid ranking, chunk fetch);
- **in process**: `ChunkStore.search` alone (the ranking and the database, no HTTP, no embedding);
- **baselines**: the raw vector kNN alone (numpy top-50 over the store's matrix without pgvector;
  pgvector's HNSW `ORDER BY ... LIMIT 50` with it), the raw lexical top-50 alone (FTS5 /
  tsquery), and embedding the query alone.

Queries: half are 5-9-word spans cut from random chunks (known items: `span_found_at_10` is how
often a chunk holding the span comes back in the top 10), half developer questions. Results go to
`bench/results/search.json`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import numpy.typing as npt
import openai
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection

from assistants.devserver import TemporalDevServer, free_port
from assistants.retrieval.embeddings import LocalEmbedder
from assistants.store import Store
from assistants.store.chunks import insert_chunks
from assistants.store.ranking import fts5_query, query_terms
from assistants.store.search_schema import FTS_TABLE, TS_CONFIG, uses_pgvector
from assistants.store.tables import files, vector_store_files
from assistants.store.vector_stores import Embedding
from assistants.testing.postgres import PostgresCluster, pgvector_bin_dir
from bench.harness import RESULTS, ROOT, summary

CHUNKS_PER_FILE = 100
KEY = "sk-bench-search"
QUESTIONS = [
    "How do I parse a date string with a timezone?",
    "read a file line by line and strip whitespace",
    "What happens when the connection pool is exhausted?",
    "convert an integer to a hexadecimal string",
    "How are exceptions raised inside a context manager handled?",
    "thread safe queue with a maximum size",
    "Which encoding is used when none is given?",
    "compress data with gzip in memory",
    "how to sort a list of dictionaries by a key",
    "When is the callback invoked after the future completes?",
    "escape special characters in a regular expression",
    "default timeout for socket operations",
]

Vectors = npt.NDArray[np.float32]


# --- corpus -------------------------------------------------------------------------------------


def _docstrings() -> Iterator[str]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "test" in path.name or "tests" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_text(errors="ignore"))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 300:
                        yield " ".join(doc.split())


def corpus(size: int, cache: Path) -> tuple[list[str], Vectors]:
    """`size` chunk texts and their embeddings (cached between runs)."""
    texts_path, vectors_path = cache / f"chunks-{size}.json", cache / f"vectors-{size}.npy"
    if texts_path.exists() and vectors_path.exists():
        return json.loads(texts_path.read_text()), np.load(vectors_path)
    cache.mkdir(parents=True, exist_ok=True)
    words = " ".join(_docstrings()).split()
    rng = random.Random(7)
    texts = []
    for _ in range(size):
        length = rng.randint(120, 220)
        start = rng.randrange(0, len(words) - length)
        texts.append(" ".join(words[start : start + length]))
    embedder = LocalEmbedder()
    vectors = np.concatenate(
        [embedder.embed_sync(texts[i : i + 2000]) for i in range(0, len(texts), 2000)]
    )
    texts_path.write_text(json.dumps(texts))
    np.save(vectors_path, vectors)
    return texts, vectors


def queries(texts: list[str], count: int) -> list[tuple[str, int | None]]:
    """(query, index of the chunk it was cut from, or None for a question)."""
    rng = random.Random(11)
    out: list[tuple[str, int | None]] = []
    for i in range(count):
        if i % 2:
            out.append((QUESTIONS[i // 2 % len(QUESTIONS)], None))
            continue
        index = rng.randrange(len(texts))
        words = texts[index].split()
        length = rng.randint(5, 9)
        start = rng.randrange(0, len(words) - length)
        out.append((" ".join(words[start : start + length]), index))
    return out


# --- the database -------------------------------------------------------------------------------


@dataclass
class Loaded:
    store: Store
    project_id: str
    vector_store_id: str
    seconds: float


async def load(url: str, texts: list[str], vectors: Vectors) -> Loaded:
    store = Store.from_url(url)
    await store.migrate()
    await store.projects.add_key("default", KEY)
    project_id = await store.projects.resolve("default")
    assert project_id is not None
    embedder = LocalEmbedder()
    created, _ = await store.vector_stores.create(
        project_id,
        name="bench",
        metadata={},
        expires_after=None,
        embedding=Embedding(embedder.model, embedder.dimensions),
        files=[],
        day_s=86_400,
    )
    vector_store_id = created["id"]
    started = time.perf_counter()
    now = int(time.time())
    for first in range(0, len(texts), CHUNKS_PER_FILE):
        file_id = f"file-bench{first // CHUNKS_PER_FILE:019d}"
        rows = [
            {
                "project_id": project_id,
                "vector_store_id": vector_store_id,
                "file_id": file_id,
                "generation": 1,
                "position": i - first,
                "text": texts[i],
                "tokens": len(texts[i].split()),
                # Chunks of one file do not overlap (search drops overlapping neighbours).
                "char_start": (i - first) * 10_000,
                "char_end": (i - first) * 10_000 + len(texts[i]),
                "embedding": vectors[i],
            }
            for i in range(first, min(first + CHUNKS_PER_FILE, len(texts)))
        ]

        part = first // CHUNKS_PER_FILE

        def tx(
            conn: Connection, file_id: str = file_id, rows: list[Any] = rows, part: int = part
        ) -> None:
            conn.execute(
                insert(files).values(
                    id=file_id,
                    project_id=project_id,
                    created_at=now,
                    filename=f"{file_id}.txt",
                    purpose="assistants",
                    bytes=sum(len(r["text"]) for r in rows),
                    content_type="text/plain",
                    sha256="0" * 64,
                    storage_key=file_id,
                    status="processed",
                )
            )
            conn.execute(
                insert(vector_store_files).values(
                    project_id=project_id,
                    vector_store_id=vector_store_id,
                    file_id=file_id,
                    created_at=now,
                    status="completed",
                    chunking_strategy={"type": "static", "static": {}},
                    attributes={"part": part},
                    usage_bytes=0,
                    generation=1,
                    workflow_started=True,
                )
            )
            insert_chunks(conn, rows)

        await store.db.write(tx)
    if not store.db.is_sqlite:
        # Steady state, as autovacuum leaves it: statistics, visibility map, hint bits.
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()
    return Loaded(store, project_id, vector_store_id, time.perf_counter() - started)


# --- measurements -------------------------------------------------------------------------------


async def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        if asyncio.iscoroutine(result):
            await result
        out.append(time.perf_counter() - start)
    return out


async def baselines(
    loaded: Loaded, qs: list[tuple[str, int | None]], vectors: Vectors
) -> dict[str, Any]:
    store, vs = loaded.store, loaded.vector_store_id
    embedder = LocalEmbedder()
    query_vectors = embedder.embed_sync([q for q, _ in qs])
    out: dict[str, Any] = {}
    out["embed_query"] = summary(await timed(lambda: embedder.embed_sync([qs[0][0]]), 200))
    lexical: list[float] = []
    knn: list[float] = []
    pgvector = await store.db.read(uses_pgvector)
    for (query, _), vector in zip(qs, query_vectors, strict=True):
        terms = query_terms(query)
        if store.db.is_sqlite:
            statement = text(
                f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q "
                f"ORDER BY bm25({FTS_TABLE}) LIMIT 50"
            )
            params: dict[str, Any] = {"q": fts5_query(terms)}
        else:
            tsq = " || ".join(f"plainto_tsquery('{TS_CONFIG}', :t{i})" for i in range(len(terms)))
            statement = text(
                f"SELECT seq FROM vector_store_chunks WHERE tsv @@ ({tsq}) "
                f"ORDER BY ts_rank_cd(tsv, ({tsq})) DESC LIMIT 50"
            )
            params = {f"t{i}": term for i, term in enumerate(terms)}

        def lexical_alone(conn: Connection, s: Any = statement, p: Any = params) -> None:
            conn.execute(s, p).all()

        start = time.perf_counter()
        await store.db.read(lexical_alone)
        lexical.append(time.perf_counter() - start)
        if not pgvector:
            entry = store.chunks.cache.get(vs)
            assert entry is not None
            start = time.perf_counter()
            sims = entry.matrix @ vector
            best = np.argpartition(-sims, 49)[:50]
            best[np.argsort(-sims[best])]
            knn.append(time.perf_counter() - start)
        else:
            literal = "[" + ",".join(repr(float(x)) for x in vector) + "]"

            def tx(conn: Connection, literal: str = literal) -> None:
                conn.exec_driver_sql("SET LOCAL hnsw.ef_search = 50")
                conn.execute(
                    text(
                        "SELECT seq FROM vector_store_chunks WHERE dims = 256 ORDER BY "
                        "embedding::vector(256) <=> CAST(:q AS vector(256)) LIMIT 50"
                    ),
                    {"q": literal},
                ).all()

            start = time.perf_counter()
            await store.db.read(tx)
            knn.append(time.perf_counter() - start)
    out["lexical_top50_alone"] = summary(lexical)
    out["vector_knn_top50_alone"] = summary(knn)
    in_process: list[float] = []
    for (query, _), vector in zip(qs, query_vectors, strict=True):
        start = time.perf_counter()
        await store.chunks.search(loaded.project_id, [vs], [query], vector[None, :])
        in_process.append(time.perf_counter() - start)
    out["chunk_store_search_in_process"] = summary(in_process)
    return out


@contextlib.contextmanager
def api_process(url: str, temporal: TemporalDevServer, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")}
    env |= {
        "ASSISTANTS_DATABASE_URL": url,
        "ASSISTANTS_TEMPORAL_ADDRESS": temporal.address,
        "ASSISTANTS_API_PORT": str(port),
        "ASSISTANTS_DATA_DIR": str(workdir / "data"),
        "ASSISTANTS_BOOTSTRAP_API_KEY": KEY,
        "ASSISTANTS_LOG_LEVEL": "WARNING",
    }
    log = open(workdir / "api.log", "wb")  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen(
        [sys.executable, "-m", "assistants.cli", "api"], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").is_success:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"api did not start: {workdir / 'api.log'}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def end_to_end(
    base_url: str, vector_store_id: str, qs: list[tuple[str, int | None]]
) -> dict[str, Any]:
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    for query, _ in qs[:5]:  # warm-up: the API process loads the store's matrix, plans, pools
        client.vector_stores.search(vector_store_id, query=query)
    latencies, hits, known = [], 0, 0
    for query, source in qs:
        start = time.perf_counter()
        page = client.vector_stores.search(vector_store_id, query=query)
        latencies.append(time.perf_counter() - start)
        if source is not None:  # a span cut from a chunk: is a chunk holding it in the top 10?
            known += 1
            hits += any(query in r.content[0].text for r in page.data)
    return {**summary(latencies), "span_found_at_10": round(hits / max(1, known), 3)}


async def run_one(
    backend: str,
    size: int,
    texts: list[str],
    vectors: Vectors,
    qs: list[tuple[str, int | None]],
    temporal: TemporalDevServer,
    clusters: dict[str, PostgresCluster],
    workdir: Path,
) -> dict[str, Any]:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'search-{size}.db'}"
    else:
        url = clusters[backend].create_database(f"search_{size}")
    print(f"[{backend} {size}] loading…", flush=True)
    loaded = await load(url, texts[:size], vectors[:size])
    print(f"[{backend} {size}] loaded in {loaded.seconds:.1f} s; measuring", flush=True)
    # Warm the in-process cache (numpy path) before the baselines read it.
    first = LocalEmbedder().embed_sync([qs[0][0]])
    await loaded.store.chunks.search(loaded.project_id, [loaded.vector_store_id], [qs[0][0]], first)
    result: dict[str, Any] = {
        "chunks": size,
        "load_seconds": round(loaded.seconds, 1),
        "load_chunks_per_s": round(size / loaded.seconds),
    }
    result |= await baselines(loaded, qs, vectors)
    await loaded.store.close()
    with api_process(url, temporal, workdir) as base_url:
        result["vector_stores_search_end_to_end"] = end_to_end(base_url, loaded.vector_store_id, qs)
    print(f"[{backend} {size}] {json.dumps(result)}", flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,pgvector")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    texts, vectors = corpus(max(sizes), RESULTS / "cache")
    qs = queries(texts[: min(sizes)], args.queries)
    results: dict[str, Any] = {"queries": args.queries, "runs": {}}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-search-")))
        temporal = stack.enter_context(
            TemporalDevServer(db_file=workdir / "temporal.db", log_file=workdir / "temporal.log")
        )
        clusters: dict[str, PostgresCluster] = {}
        if "pgvector" in backends:
            clusters["pgvector"] = stack.enter_context(PostgresCluster(bin_dir=pgvector_bin_dir()))
        if "postgres" in backends:
            clusters["postgres"] = stack.enter_context(PostgresCluster())
        for backend in backends:
            for size in sizes:
                results["runs"][f"{backend}-{size}"] = await run_one(
                    backend, size, texts, vectors, qs, temporal, clusters, workdir
                )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "search.json"
    if path.exists():  # runs of other backends or sizes from earlier invocations stay
        results["runs"] = json.loads(path.read_text()).get("runs", {}) | results["runs"]
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the PostgreSQL clusters and Temporal server are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())

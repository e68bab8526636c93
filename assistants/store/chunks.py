"""Vector-store chunks: idempotent writes for ingestion, and hybrid search.

Why it exists: ingestion (a Temporal activity, retried after crashes) must be able to write a
file's chunks any number of times without duplicates, inside its own transactions, before the
file commits; and search must rank only what is visible. So:

- a chunk's id is a hash of (store, file, generation, position) and `insert_chunks` is an upsert;
- `insert_chunks` / `delete_file` are plain functions of a `Connection`, for use inside other
  transactions (the ingestion commit, a file or store delete);
- search sees a chunk only while a `vector_store_files` row with the same (store, file,
  generation) is `completed` (the visibility rule), and applies attribute filters in the same SQL,
  before any top-K cut.

Search per store and query: the lexical top-K (FTS5 `bm25` on SQLite, `ts_rank_cd` over the GIN
tsvector index on PostgreSQL, weighted by the terms' IDF; chunks holding every term first, then
any term, each tier scoring at most LEXICAL_CAP candidates so the cost does not grow with the
store) and the vector top-K (pgvector HNSW where available, else exact cosine with numpy over
a cached matrix), fused by weighted RRF (store/ranking.py), merged across queries and stores by
best score, overlapping neighbours dropped, `score_threshold` applied to the [0, 1] score, cut
at `max_num_results`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from sqlalchemy import (
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

from assistants.store import search_schema
from assistants.store.db import Database
from assistants.store.ranking import (
    EQUAL_WEIGHTS,
    Span,
    Weights,
    candidates,
    drop_overlapping,
    fts5_query,
    fuse,
    merge_max,
    query_terms,
)
from assistants.store.search_filters import Filter, filter_clause, parse_filter
from assistants.store.tables import (
    files,
    vector_store_chunk_stats,
    vector_store_chunks,
    vector_store_files,
)
from assistants.store.vector_cache import ChunkVector, VectorCache

log = structlog.get_logger(__name__)

JSONDict = dict[str, Any]
RANKERS = ("none", "auto", "default-2024-11-15")
# pgvector: a store of at most this many chunks, or holding less than HNSW_MIN_SHARE of the
# table's chunks, is ranked exactly (a scan of its rows through the store index is quick, and an
# HNSW walk would visit mostly other stores' vectors); larger stores use HNSW with iterative scans.
EXACT_MAX_CHUNKS = 2_000
HNSW_MIN_SHARE = 0.01
# Most candidates scored per full-text tier (see `_tsquery_ranks`, `_fts5_ranks`).
LEXICAL_CAP = 1_000

_chunks = vector_store_chunks
_files = vector_store_files
_stats = vector_store_chunk_stats


class VectorType(UserDefinedType[Any]):
    """pgvector's `vector` / `vector(n)`, only for casts in expressions."""

    cache_ok = True

    def __init__(self, dims: int | None = None) -> None:
        self.dims = dims

    def get_col_spec(self, **_: Any) -> str:
        return f"vector({self.dims})" if self.dims else "vector"


def chunk_id(vector_store_id: str, file_id: str, generation: int, position: int) -> str:
    """The deterministic id of a chunk: the same chunk written twice is one row."""
    digest = hashlib.sha256(
        f"{vector_store_id}\x00{file_id}\x00{generation}\x00{position}".encode()
    ).hexdigest()
    return f"vsc_{digest[:40]}"


def as_float32(value: Any) -> npt.NDArray[np.float32]:
    """An embedding given as float32 bytes, a numpy array or a list of floats, as float32."""
    if isinstance(value, bytes | bytearray | memoryview):
        return np.frombuffer(bytes(value), dtype="<f4").astype(np.float32)
    array: npt.NDArray[np.float32] = np.asarray(value, dtype=np.float32).reshape(-1)
    return array


def _vector_literal(vector: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# --- writes (sync, inside the caller's transaction) ------------------------------------------


def insert_chunks(conn: Connection, rows: Sequence[JSONDict]) -> None:
    """Upsert chunks by id (an existing id is left as it is: same id, same chunk).

    Each row: project_id, vector_store_id, file_id, generation, position, text, tokens,
    char_start, char_end, page (optional), embedding (float32 bytes, array or list); `id` is
    derived when absent. Inserted chunks stay invisible until their file row commits.
    """
    if not rows:
        return
    pgvector = search_schema.uses_pgvector(conn)
    records: list[JSONDict] = []
    touched: Counter[str] = Counter()
    dims_seen: set[int] = set()
    for row in rows:
        vector = as_float32(row["embedding"])
        if not len(vector):
            raise ValueError("a chunk needs a non-empty embedding")
        dims_seen.add(len(vector))
        store = row["vector_store_id"]
        touched[store] += 0
        record = {
            "id": row.get("id")
            or chunk_id(store, row["file_id"], int(row["generation"]), int(row["position"])),
            "project_id": row["project_id"],
            "vector_store_id": store,
            "file_id": row["file_id"],
            "generation": int(row["generation"]),
            "position": int(row["position"]),
            # PostgreSQL text cannot hold U+0000; a space keeps every character offset.
            "text": str(row["text"]).replace("\x00", " "),
            "tokens": int(row["tokens"]),
            "char_start": int(row["char_start"]),
            "char_end": int(row["char_end"]),
            "page": row.get("page"),
            "dims": len(vector),
        }
        if pgvector:
            record["embedding_text"] = _vector_literal(vector)
        else:
            record["embedding"] = vector.astype("<f4").tobytes()
        records.append(record)
    if pgvector:
        for dims in dims_seen:
            search_schema.ensure_hnsw_index(conn, dims)
    insert = _dialect_insert(conn)(_chunks)
    if pgvector:
        insert = insert.values(
            embedding=cast(bindparam("embedding_text", type_=Text), VectorType())
        )
    statement = insert.on_conflict_do_nothing(index_elements=["id"]).returning(
        _chunks.c.vector_store_id
    )
    for (store,) in conn.execute(statement, records):
        touched[store] += 1
    for store, added in touched.items():
        _bump(conn, store, added)


def delete_file(
    conn: Connection, vector_store_id: str, file_id: str, generation: int | None = None
) -> int:
    """Delete a file's chunks in a store (every generation, or only `generation`); returns how
    many went. Idempotent."""
    condition = and_(_chunks.c.vector_store_id == vector_store_id, _chunks.c.file_id == file_id)
    if generation is not None:
        condition = and_(condition, _chunks.c.generation == generation)
    removed = conn.execute(delete(_chunks).where(condition)).rowcount or 0
    if removed:
        _bump(conn, vector_store_id, -removed)
    return removed


def delete_store(conn: Connection, vector_store_id: str) -> int:
    """Delete every chunk of a store and its bookkeeping (store deletion)."""
    removed = (
        conn.execute(delete(_chunks).where(_chunks.c.vector_store_id == vector_store_id)).rowcount
        or 0
    )
    conn.execute(delete(_stats).where(_stats.c.vector_store_id == vector_store_id))
    return removed


def _dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _bump(conn: Connection, vector_store_id: str, added: int) -> None:
    statement = _dialect_insert(conn)(_stats).values(
        vector_store_id=vector_store_id, version=1, chunks=max(0, added)
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["vector_store_id"],
            set_={"version": _stats.c.version + 1, "chunks": _stats.c.chunks + added},
        )
    )


# --- search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    vector_store_id: str
    file_id: str
    filename: str
    score: float
    attributes: JSONDict
    text: str
    position: int
    char_start: int
    char_end: int
    page: int | None


@dataclass
class _StorePlan:
    version: int
    chunks: int
    lexical: list[list[int]]
    vector: list[list[int]] | None  # None: rank with numpy
    allowed: set[tuple[str, int]]


def _visible(project_id: str, flt: Filter | None, dialect: str) -> ColumnElement[bool]:
    """The visibility rule, plus the attribute filter, as the join condition chunk -> file row."""
    return and_(
        _files.c.vector_store_id == _chunks.c.vector_store_id,
        _files.c.file_id == _chunks.c.file_id,
        _files.c.generation == _chunks.c.generation,
        _files.c.status == "completed",
        _files.c.project_id == project_id,
        filter_clause(flt, _files.c.attributes, dialect),
    )


def _normalise(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: npt.NDArray[np.float32] = matrix / norms
    return normalised


def _fts5_ranks(
    conn: Connection,
    terms: list[str],
    scope: ColumnElement[bool],
    visible: ColumnElement[bool],
    k: int,
    cap: int,
) -> list[int]:
    """FTS5's BM25 with a bounded cost, in the same two tiers as `_tsquery_ranks`: chunks
    holding every term, then (if fewer than `k`) chunks holding any term. Each tier scores at
    most `cap` matching chunks that pass the filters. The FTS table is the query's only FROM
    table (visibility and filters are a correlated EXISTS), so FTS5 drives it and, with no
    ORDER BY inside, stops reading its lists at the cap."""
    fts = table(search_schema.FTS_TABLE, column("rowid"))
    fts_name: ColumnElement[Any] = literal_column(search_schema.FTS_TABLE)
    passes = (
        select(literal_column("1"))
        .select_from(_chunks.join(_files, visible))
        .where(_chunks.c.seq == fts.c.rowid, scope)
        .exists()
    )
    tiers = [" AND ".join(fts5_query([term]) for term in terms), fts5_query(terms)]
    ranked: list[int] = []
    for match in tiers[1:] if len(terms) == 1 else tiers:
        candidates = (
            select(fts.c.rowid.label("seq"), func.bm25(fts_name).label("score"))
            .where(fts_name.op("MATCH")(match), passes)
            .limit(cap)
            .subquery()
        )
        statement = (
            select(candidates.c.seq)
            .order_by(candidates.c.score, candidates.c.seq)  # bm25: lower is better
            .limit(k)
        )
        seen = set(ranked)
        ranked += [row[0] for row in conn.execute(statement) if row[0] not in seen]
        if len(ranked) >= k:
            break
    return ranked[:k]


def _tsquery_ranks(
    conn: Connection,
    terms: list[str],
    scope: ColumnElement[bool],
    visible: ColumnElement[bool],
    k: int,
    cap: int,
) -> list[int]:
    """PostgreSQL full-text ranking with a bounded cost.

    `ts_rank_cd` reads each candidate's tsvector, so ranking every row an OR of common words
    matches grows with the store (hundreds of ms at 100k chunks). Candidates are therefore taken
    in two tiers, each at most `cap` rows found through the GIN index: first the chunks holding
    every term (few, and the best lexical matches), then, if those are fewer than `k`, chunks
    holding any term. Beyond `cap` matches a tier ranks a sample; the vector half of the hybrid
    ranking still sees every chunk.
    """
    config: ColumnElement[Any] = literal_column(f"'{search_schema.TS_CONFIG}'::regconfig")
    per_term: list[ColumnElement[Any]] = [
        func.plainto_tsquery(config, bindparam(None, term, Text)) for term in terms
    ]
    any_term = reduce(lambda a, b: a.op("||")(b), per_term)
    tiers = [func.plainto_tsquery(config, bindparam(None, " ".join(terms), Text)), any_term]
    if len(terms) == 1:
        tiers = tiers[1:]
    tsv: ColumnElement[Any] = literal_column("vector_store_chunks.tsv")
    ranked: list[int] = []
    # The planner costs a tsvector match on a sequential scan as cheap, but each one decompresses
    # the row's tsvector; the GIN index finds the candidates without reading them (measured:
    # half the time at 10k and 100k chunks). Only for these statements.
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    for tier in tiers:
        candidates = (
            select(_chunks.c.seq.label("seq"), tsv.label("tsv"))
            .select_from(_chunks.join(_files, visible))
            .where(tsv.op("@@")(tier), scope)
            .limit(cap)
            .cte()
            .prefix_with("MATERIALIZED")
        )
        statement = select(
            candidates.c.seq,
            func.ts_rank_cd(candidates.c.tsv, any_term),
            *(candidates.c.tsv.op("@@")(term) for term in per_term),
        )
        seen = set(ranked)
        ranked += [seq for seq in _idf_order(conn.execute(statement).all())[:k] if seq not in seen]
        if len(ranked) >= k:
            break
    # (An error aborts the transaction, and with it this setting.)
    conn.exec_driver_sql("SET LOCAL enable_seqscan = on")
    return ranked[:k]


def _idf_order(rows: Sequence[Any]) -> list[int]:
    """Candidates `(seq, ts_rank_cd, matches term 1, matches term 2, …)` best first.

    `ts_rank_cd` has no inverse document frequency: for an OR of terms, a chunk repeating a
    common word ("return", "object") outranks the only chunk holding the rare one, which made
    PostgreSQL's lexical ranking far worse than FTS5's BM25 (bench/retrieval_quality.py: nDCG@10
    0.22 against 0.65). So chunks are ordered by the summed IDF of the terms they hold, the IDF
    estimated over the candidates, then by `ts_rank_cd`. (In the every-term tier all IDFs are
    equal and the order is `ts_rank_cd`'s.)
    """
    n = len(rows)
    terms = len(rows[0]) - 2 if rows else 0
    idf = [math.log((n + 1) / (sum(1 for row in rows if row[2 + i]) + 0.5)) for i in range(terms)]
    weight = {
        row[0]: sum(w for w, matched in zip(idf, row[2:], strict=True) if matched) for row in rows
    }
    ordered = sorted(rows, key=lambda row: (-weight[row[0]], -float(row[1]), row[0]))
    return [int(row[0]) for row in ordered]


class ChunkStore:
    def __init__(
        self,
        db: Database,
        cache: VectorCache | None = None,
        *,
        exact_max_chunks: int = EXACT_MAX_CHUNKS,
        lexical_cap: int = LEXICAL_CAP,
    ) -> None:
        self._db = db
        self.cache = cache or VectorCache()
        self.exact_max_chunks = exact_max_chunks
        self.lexical_cap = lexical_cap

    async def insert(self, rows: Sequence[JSONDict]) -> None:
        await self._db.write(lambda conn: insert_chunks(conn, rows))

    async def delete(
        self, vector_store_id: str, file_id: str, generation: int | None = None
    ) -> int:
        return await self._db.write(
            lambda conn: delete_file(conn, vector_store_id, file_id, generation)
        )

    async def count(self, vector_store_id: str, file_id: str | None = None) -> int:
        """How many chunks (visible or not) a store, or one file in it, has."""
        condition = _chunks.c.vector_store_id == vector_store_id
        if file_id is not None:
            condition = and_(condition, _chunks.c.file_id == file_id)

        def tx(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).where(condition)).scalar_one())

        return await self._db.read(tx)

    async def search(
        self,
        project_id: str,
        vector_store_ids: Sequence[str],
        queries: Sequence[str],
        query_vectors: npt.ArrayLike,
        *,
        filters: JSONDict | Filter | None = None,
        max_num_results: int = 10,
        score_threshold: float = 0.0,
        ranker: str = "auto",
        weights: Weights = EQUAL_WEIGHTS,
    ) -> list[SearchHit]:
        """The best visible chunks of the stores for the queries, scores in [0, 1], best first.

        `query_vectors` holds one embedding per query (the stores' model). `ranker` `none` is the
        fusion alone; the others are the same today (no reranker stage is configured).
        """
        if ranker not in RANKERS:
            raise ValueError(f"unknown ranker {ranker!r}")
        flt = parse_filter(filters) if isinstance(filters, dict) else filters
        vectors = _normalise(query_vectors)
        if len(vectors) != len(queries):
            raise ValueError("one query vector per query")
        k = candidates(max_num_results)
        stores = list(dict.fromkeys(vector_store_ids))

        plans = await self._db.read(
            lambda conn: {
                store: self._plan(conn, project_id, store, queries, vectors, flt, k)
                for store in stores
            }
        )
        scored: list[dict[int, float]] = []
        for store, plan in plans.items():
            if plan is None:
                continue
            vector_ranks = plan.vector
            if vector_ranks is None:
                vector_ranks = await self._numpy_ranks(store, plan, vectors, k)
            for lexical, vector in zip(plan.lexical, vector_ranks, strict=True):
                scored.append(fuse(lexical, vector, weights))
        merged = merge_max(scored)
        ranked = sorted(
            (seq for seq, score in merged.items() if score >= score_threshold),
            key=lambda seq: (-merged[seq], seq),
        )[: 4 * max_num_results + 20]
        if not ranked:
            return []
        rows = await self._db.read(lambda conn: self._fetch(conn, project_id, ranked, flt))
        spans = {
            seq: Span(
                (row.vector_store_id, row.file_id, row.generation), row.char_start, row.char_end
            )
            for seq, row in rows.items()
        }
        kept = drop_overlapping(ranked, spans)[:max_num_results]
        return [
            SearchHit(
                chunk_id=rows[seq].id,
                vector_store_id=rows[seq].vector_store_id,
                file_id=rows[seq].file_id,
                filename=rows[seq].filename or "",
                score=round(merged[seq], 6),
                attributes=dict(rows[seq].attributes or {}),
                text=rows[seq].text,
                position=rows[seq].position,
                char_start=rows[seq].char_start,
                char_end=rows[seq].char_end,
                page=rows[seq].page,
            )
            for seq in kept
        ]

    # -- one store, inside a read transaction --

    def _plan(
        self,
        conn: Connection,
        project_id: str,
        store: str,
        queries: Sequence[str],
        vectors: npt.NDArray[np.float32],
        flt: Filter | None,
        k: int,
    ) -> _StorePlan | None:
        stats = conn.execute(
            select(_stats.c.version, _stats.c.chunks).where(_stats.c.vector_store_id == store)
        ).first()
        if stats is None or stats.chunks <= 0:
            return None  # no chunk was ever written: nothing can match
        dialect = conn.dialect.name
        visible = _visible(project_id, flt, dialect)
        lexical = [self._lexical(conn, project_id, store, q, visible, k) for q in queries]
        plan = _StorePlan(stats.version, stats.chunks, lexical, None, set())
        if search_schema.uses_pgvector(conn):
            plan.vector = [
                self._pgvector(conn, project_id, store, v, visible, k, stats.chunks)
                for v in vectors
            ]
        else:
            allowed = conn.execute(
                select(_files.c.file_id, _files.c.generation).where(
                    _files.c.vector_store_id == store,
                    _files.c.project_id == project_id,
                    _files.c.status == "completed",
                    filter_clause(flt, _files.c.attributes, dialect),
                )
            )
            plan.allowed = {(row.file_id, row.generation) for row in allowed}
        return plan

    def _lexical(
        self,
        conn: Connection,
        project_id: str,
        store: str,
        query: str,
        visible: ColumnElement[bool],
        k: int,
    ) -> list[int]:
        terms = query_terms(query)
        if not terms:
            return []
        scope = and_(_chunks.c.vector_store_id == store, _chunks.c.project_id == project_id)
        if conn.dialect.name == "sqlite":
            return _fts5_ranks(conn, terms, scope, visible, k, self.lexical_cap)
        return _tsquery_ranks(conn, terms, scope, visible, k, self.lexical_cap)

    def _pgvector(
        self,
        conn: Connection,
        project_id: str,
        store: str,
        vector: npt.NDArray[np.float32],
        visible: ColumnElement[bool],
        k: int,
        chunks: int,
    ) -> list[int]:
        dims = len(vector)
        query = bindparam(None, _vector_literal(vector), Text)
        scope = and_(
            _chunks.c.vector_store_id == store,
            _chunks.c.project_id == project_id,
            # A literal, so that the planner can match the per-dimension partial HNSW index.
            _chunks.c.dims == literal_column(str(int(dims))),
        )
        if (
            chunks > self.exact_max_chunks
            and chunks >= HNSW_MIN_SHARE * search_schema.estimated_chunks(conn)
            and search_schema.has_hnsw_index(conn, dims)
        ):
            # Iterative scans keep walking the graph until `k` rows pass the filters (pgvector
            # 0.8); relaxed order is re-sorted here by the distance returned.
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, k))}")
            if search_schema.has_iterative_scan(conn):
                conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
            distance = cast(_chunks.c.embedding, VectorType(dims)).op("<=>")(
                cast(query, VectorType(dims))
            )
            rows = conn.execute(
                select(_chunks.c.seq, distance.label("distance"))
                .select_from(_chunks.join(_files, visible))
                .where(scope)
                .order_by(distance)
                .limit(k)
            ).all()
            if len(rows) >= k:
                return [row.seq for row in sorted(rows, key=lambda r: (r.distance, r.seq))]
        # Exact: the uncast expression matches no index, so this is a scan of the store's rows.
        distance = _chunks.c.embedding.op("<=>")(cast(query, VectorType()))
        rows = conn.execute(
            select(_chunks.c.seq)
            .select_from(_chunks.join(_files, visible))
            .where(scope)
            .order_by(distance, _chunks.c.seq)
            .limit(k)
        ).all()
        return [row.seq for row in rows]

    async def _numpy_ranks(
        self, store: str, plan: _StorePlan, vectors: npt.NDArray[np.float32], k: int
    ) -> list[list[int]]:
        if not plan.allowed:
            return [[] for _ in range(len(vectors))]
        loop = asyncio.get_running_loop()
        dims = vectors.shape[1]

        def read(fn: Any) -> Any:
            # Called from the worker thread below: the read itself runs on the event loop's
            # database handle, and this thread waits for it.
            return asyncio.run_coroutine_threadsafe(self._db.read(fn), loop).result()

        def current_seqs() -> npt.NDArray[np.int64]:
            rows = read(
                lambda conn: conn.execute(
                    select(_chunks.c.seq).where(
                        _chunks.c.vector_store_id == store, _chunks.c.dims == dims
                    )
                ).all()
            )
            return np.fromiter((r[0] for r in rows), np.int64, len(rows))

        def load(seqs: npt.NDArray[np.int64] | None) -> list[ChunkVector]:
            columns = (
                _chunks.c.seq,
                _chunks.c.file_id,
                _chunks.c.generation,
                _chunks.c.embedding,
            )
            where = and_(_chunks.c.vector_store_id == store, _chunks.c.dims == dims)

            def tx(conn: Connection) -> list[ChunkVector]:
                if seqs is None:
                    result = conn.execute(select(*columns).where(where))
                    return [(r[0], r[1], r[2], bytes(r[3])) for r in result]
                out: list[ChunkVector] = []
                for start in range(0, len(seqs), 500):
                    batch = [int(s) for s in seqs[start : start + 500]]
                    result = conn.execute(select(*columns).where(where, _chunks.c.seq.in_(batch)))
                    out.extend((r[0], r[1], r[2], bytes(r[3])) for r in result)
                return out

            rows: list[ChunkVector] = read(tx)
            return rows

        def rank() -> list[list[int]]:
            entry = self.cache.refresh(store, plan.version, dims, current_seqs, load)
            return entry.top(vectors, plan.allowed, k)

        return await asyncio.to_thread(rank)

    def _fetch(
        self, conn: Connection, project_id: str, seqs: list[int], flt: Filter | None
    ) -> dict[int, Any]:
        """The ranked chunks still visible now (a file deleted since ranking drops out)."""
        visible = _visible(project_id, flt, conn.dialect.name)
        statement = (
            select(
                _chunks.c.seq,
                _chunks.c.id,
                _chunks.c.vector_store_id,
                _chunks.c.file_id,
                _chunks.c.generation,
                _chunks.c.position,
                _chunks.c.text,
                _chunks.c.char_start,
                _chunks.c.char_end,
                _chunks.c.page,
                _files.c.attributes,
                files.c.filename,
            )
            .select_from(
                _chunks.join(_files, visible).outerjoin(
                    files, and_(files.c.id == _chunks.c.file_id, files.c.project_id == project_id)
                )
            )
            .where(_chunks.c.seq.in_(seqs), _chunks.c.project_id == project_id)
        )
        return {row.seq: row for row in conn.execute(statement)}

"""The search indexes of `vector_store_chunks` that `metadata.create_all` cannot express.

Why it exists: the lexical and vector indexes are dialect-specific DDL: an FTS5 external-content
table kept in sync by triggers on SQLite; a generated `tsvector` column with a GIN index, and
pgvector's `vector` type when `CREATE EXTENSION vector` succeeds, on PostgreSQL. The DDL is attached
to the table's `after_create` event, so a fresh database (`metadata.create_all`) and a migrated one
(migration 8: `vector_store_chunks.create`) end up with exactly the same shape.

HNSW indexes are per dimension (a store's embedding model fixes its vectors' size, and one column
serves every store): `ensure_hnsw_index` adds a partial expression index the first time chunks of
a new size arrive (pgvector's documented recipe for mixed dimensions).
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Table, event, text
from sqlalchemy.engine import Connection

log = structlog.get_logger(__name__)

FTS_TABLE = "vector_store_chunks_fts"
# Porter stemming on SQLite and the `english` configuration on PostgreSQL: the same words match.
TS_CONFIG = "english"
_PGVECTOR_KEY = "assistants_chunks_pgvector"
_HNSW_KEY = "assistants_chunks_hnsw_dims"
_ITERATIVE_KEY = "assistants_chunks_hnsw_iterative"
_HNSW_MAX_DIMS = 2000  # pgvector indexes `vector` up to 2,000 dimensions

_SQLITE_DDL = [
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
        text, content='vector_store_chunks', content_rowid='seq',
        tokenize='porter unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER IF NOT EXISTS vector_store_chunks_ai AFTER INSERT ON vector_store_chunks
        BEGIN INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.seq, new.text); END""",
    f"""CREATE TRIGGER IF NOT EXISTS vector_store_chunks_ad AFTER DELETE ON vector_store_chunks
        BEGIN INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text)
              VALUES ('delete', old.seq, old.text); END""",
    f"""CREATE TRIGGER IF NOT EXISTS vector_store_chunks_au AFTER UPDATE OF text
        ON vector_store_chunks
        BEGIN INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text)
              VALUES ('delete', old.seq, old.text);
              INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.seq, new.text); END""",
]

_POSTGRES_DDL = [
    f"""ALTER TABLE vector_store_chunks ADD COLUMN IF NOT EXISTS tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', "text")) STORED""",
    "CREATE INDEX IF NOT EXISTS ix_vector_store_chunks_tsv ON vector_store_chunks USING gin (tsv)",
]


def _after_create(target: Table, connection: Connection, **_: Any) -> None:
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_DDL:
            connection.exec_driver_sql(statement)
    elif connection.dialect.name == "postgresql":
        for statement in _POSTGRES_DDL:
            connection.exec_driver_sql(statement)
        _try_pgvector(connection)


def _try_pgvector(connection: Connection) -> None:
    """Store embeddings as pgvector's `vector` if the extension can be created; otherwise they
    stay float32 `bytea` and search ranks them with numpy (the same path as SQLite)."""
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
        # The table was created a moment ago in this transaction: no row to convert.
        connection.exec_driver_sql(
            "ALTER TABLE vector_store_chunks ALTER COLUMN embedding TYPE vector USING NULL"
        )
    except Exception as error:
        savepoint.rollback()
        log.info("pgvector unavailable: vectors ranked with numpy", reason=str(error)[:200])
    else:
        savepoint.commit()
        log.info("pgvector enabled for vector_store_chunks")


def attach(table: Table) -> None:
    """Attach the dialect-specific DDL to `vector_store_chunks` (called once, in tables.py)."""
    event.listen(table, "after_create", _after_create)


def uses_pgvector(conn: Connection) -> bool:
    """Whether this database stores chunk embeddings as pgvector `vector` (cached per pooled
    DBAPI connection; the column type is fixed when the table is created)."""
    if conn.dialect.name != "postgresql":
        return False
    cached = conn.info.get(_PGVECTOR_KEY)
    if cached is None:
        kind = conn.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'vector_store_chunks'::regclass AND attname = 'embedding'"
            )
        ).scalar()
        cached = kind == "vector"
        conn.info[_PGVECTOR_KEY] = cached
    return bool(cached)


def hnsw_index_name(dims: int) -> str:
    return f"ix_vector_store_chunks_hnsw_{dims}"


def ensure_hnsw_index(conn: Connection, dims: int) -> None:
    """Create the HNSW cosine index for `dims`-sized vectors if it does not exist yet.

    Runs inside the caller's transaction the first time a size is seen (no row of that size
    exists yet, so the build is quick). An advisory lock keeps two first inserts from racing.
    """
    if not 1 <= dims <= _HNSW_MAX_DIMS:
        return  # larger vectors are ranked exactly (pgvector cannot index them as `vector`)
    known: set[int] = conn.info.setdefault(_HNSW_KEY, set())
    if dims in known:
        return
    name = hnsw_index_name(dims)
    exists = conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()
    if exists:
        known.add(dims)  # remembered only once committed: a rolled-back creation is retried
    else:
        conn.execute(text("SELECT pg_advisory_xact_lock(727275)"))
        # `dims` is an int from our own rows: safe to inline, and it must be a literal for the
        # planner to match the partial index's predicate.
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {name} ON vector_store_chunks "
            f"USING hnsw ((embedding::vector({int(dims)})) vector_cosine_ops) "
            f"WHERE dims = {int(dims)}"
        )
        log.info("hnsw index created", dims=dims)


def has_hnsw_index(conn: Connection, dims: int) -> bool:
    known: set[int] = conn.info.setdefault(_HNSW_KEY, set())
    if dims in known:
        return True
    name = hnsw_index_name(dims)
    if conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar():
        known.add(dims)
        return True
    return False


def has_iterative_scan(conn: Connection) -> bool:
    """Whether the installed pgvector (0.8+) can continue an HNSW scan until enough rows pass
    the query's filters (`hnsw.iterative_scan`); older versions reject the setting."""
    cached = conn.info.get(_ITERATIVE_KEY)
    if cached is None:
        version = conn.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
        parts = [int(p) for p in str(version or "0").split(".")[:2] if p.isdigit()]
        cached = tuple(parts) >= (0, 8)
        conn.info[_ITERATIVE_KEY] = cached
    return bool(cached)


def estimated_chunks(conn: Connection) -> float:
    """The planner's estimate of the chunk table's rows (0 before the first ANALYZE)."""
    rows = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'vector_store_chunks'::regclass")
    ).scalar()
    return max(0.0, float(rows or 0))

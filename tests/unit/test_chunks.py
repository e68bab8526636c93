"""The chunk store and hybrid search on SQLite, PostgreSQL without pgvector and PostgreSQL with
pgvector: schema (fresh == migrated), idempotent writes, the visibility rule, every filter
operator translated to SQL on each dialect, ranking and scores, and the vector cache across
processes. Rows of `vector_stores`/`vector_store_files`/`files` are written directly here (the
ingestion that normally writes them is tested end to end in tests/integration)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.engine import Connection

from assistants.errors import InvalidRequest
from assistants.retrieval.embeddings import LocalEmbedder
from assistants.store import Store
from assistants.store import chunks as chunk_module
from assistants.store.chunks import ChunkStore, chunk_id, delete_file, insert_chunks
from assistants.store.migrations import LATEST, schema_version
from assistants.store.ranking import Span, Weights, drop_overlapping, fts5_query, fuse, query_terms
from assistants.store.search_filters import parse_filter
from assistants.store.search_schema import uses_pgvector
from assistants.store.tables import (
    files,
    metadata,
    vector_store_chunk_stats,
    vector_store_chunks,
    vector_store_files,
    vector_stores,
)
from assistants.testing.postgres import PostgresCluster

BACKENDS = ["sqlite", "postgres", "pgvector"]
PROJECT = "proj_a"
_counter = itertools.count()
_embedder = LocalEmbedder()


def _url(request: pytest.FixtureRequest, backend: str, tmp_path: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    fixture = "pgvector_postgres" if backend == "pgvector" else "postgres"
    cluster: PostgresCluster = request.getfixturevalue(fixture)
    return cluster.create_database(f"{name}_{next(_counter)}_{int(time.time())}")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(_url(request, request.param, tmp_path, "chunks"))
    await store.migrate()
    yield store
    await store.close()


def embed(texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return _embedder.embed_sync(list(texts))


class World:
    """A vector store with files, written directly."""

    def __init__(self, store: Store, vector_store_id: str = "vs_test", project: str = PROJECT):
        self.store = store
        self.vs = vector_store_id
        self.project = project

    async def create(self) -> World:
        def tx(conn: Connection) -> None:
            conn.execute(
                insert(vector_stores).values(
                    id=self.vs,
                    project_id=self.project,
                    created_at=int(time.time()),
                    name="t",
                    metadata={},
                    last_active_at=int(time.time()),
                    embedding_model=_embedder.model,
                    embedding_dims=_embedder.dimensions,
                    expired=False,
                    expiry_scheduled=True,
                )
            )

        await self.store.db.write(tx)
        return self

    async def add_file(
        self,
        file_id: str,
        texts: Sequence[str],
        *,
        status: str = "completed",
        attributes: dict[str, Any] | None = None,
        generation: int = 1,
        chunk_generation: int | None = None,
    ) -> None:
        vectors = embed(texts)
        rows = []
        offset = 0
        for position, (chunk_text, vector) in enumerate(zip(texts, vectors, strict=True)):
            rows.append(
                {
                    "project_id": self.project,
                    "vector_store_id": self.vs,
                    "file_id": file_id,
                    "generation": chunk_generation or generation,
                    "position": position,
                    "text": chunk_text,
                    "tokens": len(chunk_text.split()),
                    "char_start": offset,
                    "char_end": offset + len(chunk_text),
                    "page": None,
                    "embedding": vector.tobytes(),
                }
            )
            offset += len(chunk_text) + 1

        def tx(conn: Connection) -> None:
            conn.execute(
                insert(files).values(
                    id=file_id,
                    project_id=self.project,
                    created_at=int(time.time()),
                    filename=f"{file_id}.txt",
                    purpose="assistants",
                    bytes=offset,
                    content_type="text/plain",
                    sha256="0" * 64,
                    storage_key=file_id,
                    status="processed",
                )
            )
            conn.execute(
                insert(vector_store_files).values(
                    project_id=self.project,
                    vector_store_id=self.vs,
                    file_id=file_id,
                    created_at=int(time.time()),
                    status=status,
                    chunking_strategy={"type": "static"},
                    attributes=attributes or {},
                    usage_bytes=0,
                    generation=generation,
                    workflow_started=True,
                )
            )
            insert_chunks(conn, rows)

        await self.store.db.write(tx)

    async def set_status(self, file_id: str, status: str) -> None:
        await self.store.db.write(
            lambda conn: conn.execute(
                update(vector_store_files)
                .where(
                    vector_store_files.c.vector_store_id == self.vs,
                    vector_store_files.c.file_id == file_id,
                )
                .values(status=status)
            )
        )

    async def search(
        self, query: str | list[str], chunk_store: ChunkStore | None = None, **options: Any
    ) -> list[chunk_module.SearchHit]:
        queries = [query] if isinstance(query, str) else query
        return await (chunk_store or self.store.chunks).search(
            self.project, [self.vs], queries, embed(queries), **options
        )


DISTRACTORS = [
    "The quarterly report covers revenue growth in the European market and new hires.",
    "Our office kitchen is cleaned every Friday afternoon by the facilities team.",
    "The marketing plan targets young professionals through social media campaigns.",
    "Server maintenance windows are scheduled on the first Sunday of each month.",
    "The cafeteria menu changes weekly and includes vegetarian options.",
    "Parking permits must be renewed at the front desk before January.",
    "The design team uses a shared library of icons and typography guidelines.",
    "Annual performance reviews happen in December with each team lead.",
    "The company picnic was moved indoors because of the rain forecast.",
    "Travel expenses are reimbursed within thirty days of submitting receipts.",
    "The history of the printing press begins with movable type in the 15th century.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]
FACT = "The secret launch code for project Bluebird is 7741, known only to the pilots."


# --- schema -----------------------------------------------------------------------------------


def _search_schema(conn: Connection) -> list[tuple[Any, ...]]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(
            text(
                "SELECT type, name, sql FROM sqlite_master "
                "WHERE name LIKE 'vector_store_chunk%' OR tbl_name LIKE 'vector_store_chunk%' "
                "ORDER BY name"
            )
        )
        return [tuple(" ".join(str(v).split()) for v in row) for row in rows]
    columns = conn.execute(
        text(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE c.relname LIKE 'vector_store_chunk%' AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY 1, a.attnum"
        )
    )
    indexes = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename LIKE 'vector_store_chunk%' ORDER BY 1"
        )
    )
    extensions = conn.execute(text("SELECT extname FROM pg_extension ORDER BY 1"))
    return [*map(tuple, columns), *map(tuple, indexes), *map(tuple, extensions)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_fresh_and_migrated_schemas_are_the_same(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    fresh = Store.from_url(_url(request, backend, tmp_path, "fresh"))
    old = Store.from_url(_url(request, backend, tmp_path, "old"))
    try:
        assert await fresh.migrate() == [LATEST]

        def at_version_7(conn: Connection) -> None:
            later = {vector_store_chunks.name, vector_store_chunk_stats.name}
            metadata.create_all(
                conn, tables=[t for t in metadata.sorted_tables if t.name not in later]
            )
            schema_version.create(conn)
            conn.execute(
                schema_version.insert().values(version=7, name="before chunks", applied_at=0)
            )

        await old.db.write(at_version_7)
        assert 8 in await old.migrate()
        fresh_shape = await fresh.db.read(_search_schema)
        old_shape = await old.db.read(_search_schema)
        assert fresh_shape == old_shape
        names = " ".join(str(part) for row in fresh_shape for part in row)
        if backend == "sqlite":
            assert "fts5" in names and "vector_store_chunks_ai" in names
        else:
            assert "tsvector" in names and "gin" in names
            assert ("vector" in [row[0] for row in fresh_shape]) == (backend == "pgvector")
        assert await fresh.db.read(uses_pgvector) == (backend == "pgvector")
        assert await fresh.db.read(lambda conn: inspect(conn).has_table("vector_store_chunks"))
    finally:
        await fresh.close()
        await old.close()


# --- writes -----------------------------------------------------------------------------------


async def test_insert_is_idempotent_and_delete_counts(store: Store) -> None:
    world = await World(store).create()
    await world.add_file("file-a", DISTRACTORS[:5])
    rows = await store.db.read(
        lambda conn: conn.execute(
            select(vector_store_chunks).order_by(vector_store_chunks.c.position)
        ).all()
    )
    assert [r.id for r in rows] == [chunk_id("vs_test", "file-a", 1, p) for p in range(5)]
    replay = [
        {**r._asdict(), "embedding": embed([r.text])[0]} for r in rows
    ]  # a retried activity writes the same chunks again
    await store.chunks.insert(replay)
    assert await store.chunks.count("vs_test") == 5
    stats = await store.db.read(lambda conn: conn.execute(select(vector_store_chunk_stats)).one())
    assert stats.chunks == 5 and stats.version == 2
    assert await store.chunks.delete("vs_test", "file-a") == 5
    assert await store.chunks.delete("vs_test", "file-a") == 0
    assert await store.chunks.count("vs_test") == 0
    assert await world.search("quarterly revenue") == []


async def test_delete_one_generation(store: Store) -> None:
    world = await World(store).create()
    await world.add_file("file-a", DISTRACTORS[:3], generation=2, chunk_generation=1)
    second = [
        {
            "project_id": PROJECT,
            "vector_store_id": "vs_test",
            "file_id": "file-a",
            "generation": 2,
            "position": 0,
            "text": DISTRACTORS[4],
            "tokens": 10,
            "char_start": 0,
            "char_end": 10,
            "embedding": embed([DISTRACTORS[4]])[0].tolist(),
        }
    ]
    await store.chunks.insert(second)
    assert await store.db.write(lambda conn: delete_file(conn, "vs_test", "file-a", 1)) == 3
    assert await store.chunks.count("vs_test", "file-a") == 1


# --- visibility and ranking -------------------------------------------------------------------


async def test_planted_fact_is_found_first(store: Store) -> None:
    world = await World(store).create()
    for index, chunk_text in enumerate(DISTRACTORS):
        await world.add_file(f"file-d{index}", [chunk_text])
    await world.add_file("file-fact", [DISTRACTORS[0], FACT, DISTRACTORS[1]])
    for query in ("What is the launch code for Bluebird?", "bluebird pilots code"):
        hits = await world.search(query)
        assert hits[0].text == FACT and hits[0].file_id == "file-fact"
        assert hits[0].filename == "file-fact.txt"
        assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Ranked first by both lists: the top of the [0, 1] scale.
    top = await world.search("secret launch code for project Bluebird pilots")
    assert top[0].text == FACT and top[0].score == 1.0


async def test_only_completed_files_of_the_same_generation_match(store: Store) -> None:
    world = await World(store).create()
    await world.add_file("file-ok", [DISTRACTORS[0]])
    await world.add_file("file-wip", [FACT], status="in_progress")
    await world.add_file("file-cancelled", [FACT + " cancelled"], status="cancelled")
    await world.add_file("file-failed", [FACT + " failed"], status="failed")
    await world.add_file("file-stale", [FACT + " stale"], generation=2, chunk_generation=1)
    hits = await world.search("launch code Bluebird", max_num_results=50)
    assert {h.file_id for h in hits} <= {"file-ok"}
    await world.set_status("file-wip", "completed")
    hits = await world.search("launch code Bluebird")
    assert hits[0].file_id == "file-wip"
    await world.set_status("file-wip", "cancelled")
    assert "file-wip" not in {h.file_id for h in await world.search("launch code Bluebird")}


async def test_other_projects_and_stores_never_match(store: Store) -> None:
    mine = await World(store).create()
    theirs = await World(store, "vs_theirs", project="proj_b").create()
    await mine.add_file("file-mine", [DISTRACTORS[0]])
    await theirs.add_file("file-theirs", [FACT])
    hits = await store.chunks.search(
        PROJECT, ["vs_theirs", "vs_test"], ["launch code"], embed(["launch code"])
    )
    assert {h.file_id for h in hits} == {"file-mine"}


async def test_score_threshold_and_max_num_results(store: Store) -> None:
    world = await World(store).create()
    for index, chunk_text in enumerate(DISTRACTORS):
        await world.add_file(f"file-d{index}", [chunk_text])
    everything = await world.search("team", max_num_results=50)
    assert len(everything) == len(DISTRACTORS)  # every chunk is in the vector list
    assert len(await world.search("team", max_num_results=3)) == 3
    assert len(await world.search("team", max_num_results=1)) == 1
    threshold = everything[4].score
    above = await world.search("team", max_num_results=50, score_threshold=threshold)
    assert above and all(h.score >= threshold for h in above)
    assert len(above) < len(everything)
    top = await world.search("team", max_num_results=50, score_threshold=1.0)
    assert len(top) <= 1 and all(h.score == 1.0 for h in top)  # only "first in both" is 1.0


async def test_several_queries_merge_by_best_score(store: Store) -> None:
    world = await World(store).create()
    for index, chunk_text in enumerate(DISTRACTORS):
        await world.add_file(f"file-d{index}", [chunk_text])
    hits = await world.search(["parking permits renewal", "photosynthesis glucose"])
    assert {hits[0].text, hits[1].text} == {DISTRACTORS[5], DISTRACTORS[11]}
    assert len({h.chunk_id for h in hits}) == len(hits)


async def test_lexical_query_text_is_never_passed_raw(store: Store) -> None:
    world = await World(store).create()
    await world.add_file("file-a", [FACT])
    for nasty in ['"', "'", "AND", "NOT OR", "a:b -c", "?*^()", "x NEAR(y)", "\\", "🙂", "_"]:
        hits = await world.search(nasty)
        assert all(0 <= h.score <= 1 for h in hits)


# --- filters ----------------------------------------------------------------------------------

ATTRIBUTES: dict[str, dict[str, Any]] = {
    "file-ann": {"author": "ann", "year": 2021, "draft": True, "rating": 4.5},
    "file-bob": {"author": "bob", "year": 2023, "draft": False, "rating": 3},
    "file-cy": {"author": "cy", "year": "2022", "region": "eu"},
    "file-none": {},
}

FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "eq", "key": "author", "value": "ann"}, {"file-ann"}),
    ({"type": "eq", "key": "year", "value": 2023}, {"file-bob"}),
    ({"type": "eq", "key": "year", "value": "2022"}, {"file-cy"}),
    ({"type": "eq", "key": "draft", "value": True}, {"file-ann"}),
    ({"type": "eq", "key": "draft", "value": False}, {"file-bob"}),
    ({"type": "eq", "key": "rating", "value": 3.0}, {"file-bob"}),
    ({"type": "ne", "key": "author", "value": "ann"}, {"file-bob", "file-cy", "file-none"}),
    ({"type": "ne", "key": "draft", "value": True}, {"file-bob", "file-cy", "file-none"}),
    ({"type": "gt", "key": "year", "value": 2021}, {"file-bob"}),
    ({"type": "gte", "key": "year", "value": 2021}, {"file-ann", "file-bob"}),
    ({"type": "lt", "key": "rating", "value": 4.5}, {"file-bob"}),
    ({"type": "lte", "key": "rating", "value": 4.5}, {"file-ann", "file-bob"}),
    ({"type": "gt", "key": "author", "value": "b"}, {"file-bob", "file-cy"}),
    ({"type": "lt", "key": "year", "value": "2023"}, {"file-cy"}),
    ({"type": "in", "key": "author", "value": ["ann", "cy", "zed"]}, {"file-ann", "file-cy"}),
    ({"type": "in", "key": "year", "value": [2023, "2022"]}, {"file-bob", "file-cy"}),
    ({"type": "nin", "key": "author", "value": ["ann", "bob"]}, {"file-cy", "file-none"}),
    ({"type": "eq", "key": "missing", "value": "x"}, set()),
    (
        {
            "type": "and",
            "filters": [
                {"type": "gte", "key": "year", "value": 2021},
                {"type": "eq", "key": "draft", "value": False},
            ],
        },
        {"file-bob"},
    ),
    (
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "region", "value": "eu"},
                {
                    "type": "and",
                    "filters": [
                        {"type": "eq", "key": "author", "value": "ann"},
                        {"type": "gt", "key": "rating", "value": 4},
                    ],
                },
            ],
        },
        {"file-ann", "file-cy"},
    ),
]


@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=lambda v: str(v)[:60])
async def test_filters(store: Store, flt: dict[str, Any], expected: set[str]) -> None:
    world = await World(store).create()
    for file_id, attributes in ATTRIBUTES.items():
        await world.add_file(file_id, [f"{DISTRACTORS[0]} ({file_id})"], attributes=attributes)
    hits = await world.search("quarterly report", filters=flt, max_num_results=50)
    assert {h.file_id for h in hits} == expected
    for hit in hits:
        assert hit.attributes == ATTRIBUTES[hit.file_id]


async def test_filters_apply_before_the_top_k(store: Store) -> None:
    world = await World(store).create()
    for index in range(60):  # more than the candidate depth (50), all better matches
        await world.add_file(f"file-{index:02d}", [f"{FACT} copy {index}"])
    await world.add_file("file-target", [DISTRACTORS[3]], attributes={"keep": True})
    hits = await world.search(
        "launch code Bluebird", filters={"type": "eq", "key": "keep", "value": True}
    )
    assert [h.file_id for h in hits] == ["file-target"]


async def test_odd_attribute_keys(store: Store) -> None:
    world = await World(store).create()
    keys = {'we"ird': "q", "a.b": "dot", "$[0]": "path", "ключ": "unicode"}
    await world.add_file("file-odd", [DISTRACTORS[0]], attributes=keys)
    await world.add_file("file-plain", [DISTRACTORS[1]], attributes={"a": {"b": "dot"}})
    for key, value in keys.items():
        hits = await world.search(
            "report", filters={"type": "eq", "key": key, "value": value}, max_num_results=50
        )
        assert [h.file_id for h in hits] == ["file-odd"], key


# --- the lexical tiers and their cap -----------------------------------------------------------


async def _lexical(store: Store, chunk_store: ChunkStore, query: str, flt: Any = None) -> list[str]:
    """The lexical ranking alone, as chunk texts."""
    parsed = parse_filter(flt) if flt is not None else None

    def tx(conn: Connection) -> list[str]:
        visible = chunk_module._visible(PROJECT, parsed, conn.dialect.name)
        seqs = chunk_store._lexical(conn, PROJECT, "vs_test", query, visible, 50)
        by_seq = {
            row.seq: row.text
            for row in conn.execute(
                select(vector_store_chunks.c.seq, vector_store_chunks.c.text).where(
                    vector_store_chunks.c.seq.in_(seqs)
                )
            )
        }
        return [by_seq[seq] for seq in seqs]

    return await store.db.read(tx)


async def test_chunks_holding_every_term_rank_first_and_filters_precede_the_cap(
    store: Store,
) -> None:
    world = await World(store).create()
    for index in range(12):
        await world.add_file(
            f"file-{index:02d}", [f"Walrus sighting number {index} near the pier."]
        )
    both = "A walrus and a pelican share the pier at dawn."
    await world.add_file("file-both", [both], attributes={"tag": "both"})
    capped = ChunkStore(store.db, lexical_cap=3)
    ranked = await _lexical(store, capped, "walrus pelican")
    assert ranked[0] == both
    assert len(ranked) <= 1 + 3  # the every-term tier, then at most `cap` any-term candidates
    assert len(await _lexical(store, ChunkStore(store.db), "walrus pelican")) == 13
    # The filter applies before the cap: the one matching file is found although it was written
    # last, after more than `cap` other matches.
    only = await _lexical(store, capped, "walrus", {"type": "eq", "key": "tag", "value": "both"})
    assert only == [both]


# --- the vector cache across processes --------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])  # the numpy path
async def test_cache_follows_writes_of_other_processes(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url = _url(request, backend, tmp_path, "cache")
    api, worker = Store.from_url(url), Store.from_url(url)  # two processes' handles
    try:
        await api.migrate()
        world = await World(worker).create()
        await world.add_file("file-a", DISTRACTORS[:4])
        first = await World(api).search("Bluebird launch code", max_num_results=50)
        assert FACT not in {h.text for h in first}
        entry = api.chunks.cache.get("vs_test")
        assert entry is not None and len(entry.seqs) == 4
        await world.add_file("file-b", [FACT])
        hits = await World(api).search("Bluebird launch code")
        assert hits[0].text == FACT
        await worker.chunks.delete("vs_test", "file-b")
        await world.add_file("file-c", [DISTRACTORS[5]])
        hits = await World(api).search("Bluebird launch code", max_num_results=50)
        assert FACT not in {h.text for h in hits}
        entry = api.chunks.cache.get("vs_test")
        assert entry is not None and len(entry.seqs) == 5
    finally:
        await api.close()
        await worker.close()


# --- pgvector's HNSW path ---------------------------------------------------------------------


async def test_hnsw_matches_exact_and_falls_back_when_filters_starve_it(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = Store.from_url(_url(request, "pgvector", tmp_path, "hnsw"))
    try:
        await store.migrate()
        world = await World(store).create()
        for index, chunk_text in enumerate(DISTRACTORS):
            await world.add_file(f"file-{index}", [chunk_text], attributes={"n": index})
        await world.add_file("file-fact", [FACT], attributes={"n": 99})
        exact = await world.search("Bluebird launch code", max_num_results=5)
        hnsw_store = ChunkStore(store.db, exact_max_chunks=0)
        hnsw = await world.search("Bluebird launch code", hnsw_store, max_num_results=5)
        assert [h.chunk_id for h in hnsw] == [h.chunk_id for h in exact]
        plan = await store.db.read(
            lambda conn: conn.execute(
                text(
                    "EXPLAIN SELECT seq FROM vector_store_chunks WHERE dims = 256 ORDER BY "
                    "embedding::vector(256) <=> (SELECT embedding FROM vector_store_chunks "
                    "LIMIT 1)::vector(256) LIMIT 5"
                )
            ).all()
        )
        assert "ix_vector_store_chunks_hnsw_256" in " ".join(r[0] for r in plan)
        narrow = await world.search(
            "Bluebird launch code",
            hnsw_store,
            filters={"type": "in", "key": "n", "value": [3, 99]},
        )
        assert [h.file_id for h in narrow] == ["file-fact", "file-3"]
    finally:
        await store.close()


# --- pure parts -------------------------------------------------------------------------------


def test_fusion_is_normalised() -> None:
    scores = fuse([1, 2, 3], [1, 3, 4])
    assert scores[1] == 1.0
    assert all(0 < s <= 1 for s in scores.values())
    assert scores[3] > scores[2] and scores[3] > scores[4]
    only_text = fuse([7], [], Weights(embedding=0.0, text=1.0))
    assert only_text == {7: 1.0}
    assert fuse([5], [])[5] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Weights(0.0, 0.0)


def test_query_terms_and_fts5_quoting() -> None:
    assert query_terms("What is the launch-code of Bluebird?") == ["launch", "code", "bluebird"]
    assert query_terms("the of and") == ["the", "of", "and"]  # nothing else left: keep them
    assert query_terms("?!* ()") == []
    assert fts5_query(["a", "b"]) == '"a" OR "b"'


def test_overlapping_neighbours_are_dropped() -> None:
    spans = {
        1: Span(("vs", "f", 1), 0, 100),
        2: Span(("vs", "f", 1), 40, 140),  # 60% inside chunk 1
        3: Span(("vs", "f", 1), 60, 160),  # 40% inside chunk 1
        4: Span(("vs", "g", 1), 0, 100),  # another file
    }
    assert drop_overlapping([1, 2, 3, 4], spans) == [1, 3, 4]


@pytest.mark.parametrize(
    ("flt", "param"),
    [
        ("eq", "filters"),
        ({}, "filters.type"),
        ({"type": "like", "key": "a", "value": "b"}, "filters.type"),
        ({"type": "eq", "value": "b"}, "filters.key"),
        ({"type": "eq", "key": "a"}, "filters.value"),
        ({"type": "eq", "key": "", "value": "b"}, "filters.key"),
        ({"type": "eq", "key": "k" * 65, "value": "b"}, "filters.key"),
        ({"type": "eq", "key": 3, "value": "b"}, "filters.key"),
        ({"type": "eq", "key": "a", "value": None}, "filters.value"),
        ({"type": "eq", "key": "a", "value": {"x": 1}}, "filters.value"),
        ({"type": "eq", "key": "a", "value": ["x"]}, "filters.value"),
        ({"type": "gt", "key": "a", "value": True}, "filters.value"),
        ({"type": "in", "key": "a", "value": "x"}, "filters.value"),
        ({"type": "in", "key": "a", "value": []}, "filters.value"),
        ({"type": "nin", "key": "a", "value": [True]}, "filters.value[0]"),
        ({"type": "eq", "key": "a", "value": "b", "extra": 1}, "filters.extra"),
        ({"type": "and"}, "filters.filters"),
        ({"type": "and", "filters": []}, "filters.filters"),
        ({"type": "or", "filters": {"type": "eq"}}, "filters.filters"),
        ({"type": "or", "filters": [{"type": "eq", "key": "a"}]}, "filters.filters[0].value"),
        (
            {"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1}], "key": "a"},
            "filters.key",
        ),
    ],
)
def test_malformed_filters_are_400(flt: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_filter(flt)
    assert raised.value.param == param


def test_filters_nested_too_deep_or_too_many_are_400() -> None:
    deep: dict[str, Any] = {"type": "eq", "key": "a", "value": 1}
    for _ in range(10):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(InvalidRequest):
        parse_filter(deep)
    wide = {"type": "or", "filters": [{"type": "eq", "key": "a", "value": i} for i in range(80)]}
    with pytest.raises(InvalidRequest):
        parse_filter(wide)

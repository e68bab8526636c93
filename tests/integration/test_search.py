"""`vector_stores.search` end to end, through the real `openai` SDK, on SQLite, PostgreSQL
without pgvector and PostgreSQL with pgvector: files uploaded and attached (ingested by the
worker), a planted fact found first among distractors, attribute filters (every operator,
compound), `score_threshold`, `max_num_results`, scores in [0, 1], query lists, cancelled and
in-progress files never matching, a detached file stopping to match at once, `last_active_at`
moving, a table of bad requests (each an OpenAI-shaped 4xx that writes nothing), another
project's store (404), a store built with a model no longer configured (400) and an expired store
(400, with the durable expiry on a short day)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Connection

from assistants.devserver import TemporalDevServer
from assistants.store.db import Database
from assistants.store.tables import vector_stores
from assistants.testing.scripted_model import ScriptedModel
from tests.conftest import started_stack
from tests.integration.test_bad_input import RowCounts
from tests.support.contract import validate
from tests.support.documents import filler_sentences
from tests.support.stack import Stack

BACKENDS = ["sqlite", "postgres", "pgvector"]
on_every_store = pytest.mark.parametrize("stack", BACKENDS, indirect=True)

DISTRACTORS = {
    "report.txt": "The quarterly report covers revenue growth in the European market. Sales "
    "rose eight percent, driven by new subscription plans and lower churn among small firms.",
    "kitchen.txt": "The office kitchen is cleaned every Friday afternoon by the facilities "
    "team. Please label food stored in the shared refrigerator with your name and a date.",
    "marketing.txt": "The marketing plan targets young professionals through social media "
    "campaigns, podcasts and sponsored newsletters during the spring season.",
    "servers.md": "# Maintenance\n\nServer maintenance windows are scheduled on the first "
    "Sunday of each month, between two and four in the morning, announced a week ahead.",
    "cafeteria.txt": "The cafeteria menu changes weekly and always includes vegetarian and "
    "vegan options; the salad bar opens at eleven thirty.",
    "parking.txt": "Parking permits must be renewed at the front desk before the end of "
    "January. Bicycles go in the covered rack behind building C.",
    "design.md": "The design team keeps a shared library of icons, colour tokens and "
    "typography guidelines; new components need a review before release.",
    "reviews.txt": "Annual performance reviews happen in December with each team lead, "
    "followed by goal setting for the next year in January.",
    "picnic.txt": "The company picnic was moved indoors because of the rain forecast; games "
    "and the barbecue will take place in the main hall.",
    "travel.txt": "Travel expenses are reimbursed within thirty days of submitting receipts "
    "through the finance portal, in the currency of the purchase.",
    "printing.txt": "The history of the printing press begins with movable type in the "
    "fifteenth century and changed how knowledge spread across Europe.",
    "plants.txt": "Photosynthesis converts light energy into chemical energy stored in "
    "glucose, releasing oxygen as a by-product in the leaves of green plants.",
}
FACT_FILE = "bluebird.txt"
FACT = (
    "Project Bluebird briefing. The secret launch code for project Bluebird is 7741; only the "
    "two pilots know it, and it changes every full moon."
)
ATTRIBUTES: dict[str, dict[str, str | float | bool]] = {
    "report.txt": {"team": "finance", "year": 2024, "public": True, "rating": 4.5},
    "travel.txt": {"team": "finance", "year": 2023, "public": False, "rating": 3},
    "design.md": {"team": "design", "year": 2022, "public": True},
    FACT_FILE: {"team": "aerospace", "year": 2025, "public": False, "rating": 5},
}
QUERY = "What is the launch code of project Bluebird?"


def _key(stack: Stack, project: str) -> str:
    return stack.cli("keys", "create", "--project", project).splitlines()[0].strip()


class DirectDB:
    """Writes to the stack's database from a thread of its own (its own event loop): only to put
    a store in a state no API call can reach (built with another embedding model)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def write(self, fn: Callable[[Connection], Any]) -> None:
        def run() -> None:
            async def go() -> None:
                db = Database(self._url)
                try:
                    await db.write(fn)
                finally:
                    await db.dispose()

            asyncio.run(go())

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=60)


@dataclass
class World:
    stack: Stack
    client: openai.OpenAI
    key: str
    other: openai.OpenAI
    vector_store_id: str
    file_ids: dict[str, str] = field(default_factory=dict)  # filename -> file id

    def search(self, query: str | list[str] = QUERY, **options: Any) -> list[Any]:
        page = self.client.vector_stores.search(self.vector_store_id, query=query, **options)
        return list(page.data)

    def names(self, results: list[Any]) -> list[str]:
        by_id = {file_id: name for name, file_id in self.file_ids.items()}
        return [by_id.get(r.file_id, r.file_id) for r in results]


def _upload(client: openai.OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, text.encode()), purpose="assistants").id


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    key = _key(stack, f"search-{suffix}")
    client, other = stack.client(api_key=key), stack.client(api_key=_key(stack, f"so-{suffix}"))
    store = client.vector_stores.create(name="search tests")
    file_ids = {name: _upload(client, name, text) for name, text in DISTRACTORS.items()}
    file_ids[FACT_FILE] = _upload(client, FACT_FILE, FACT)
    batch = client.vector_stores.file_batches.create_and_poll(
        store.id,
        files=[
            {"file_id": file_id, "attributes": ATTRIBUTES.get(name, {})}
            for name, file_id in file_ids.items()
        ],
        poll_interval_ms=50,
    )
    assert batch.file_counts.completed == len(file_ids), batch
    yield World(stack, client, key, other, store.id, file_ids)


# --- what a user sees ---------------------------------------------------------------------------


@on_every_store
def test_planted_fact_is_found_first(world: World) -> None:
    raw = world.client.vector_stores.with_raw_response.search(world.vector_store_id, query=QUERY)
    body = raw.http_response.json()
    validate("VectorStoreSearchResultsPage", body)
    assert body["object"] == "vector_store.search_results.page"
    assert body["search_query"] == [QUERY]
    assert body["has_more"] is False and body["next_page"] is None
    results = raw.parse().data
    assert world.names(results)[0] == FACT_FILE
    first = results[0]
    assert first.filename == FACT_FILE
    assert first.attributes == ATTRIBUTES[FACT_FILE]
    assert first.content[0].type == "text" and "7741" in first.content[0].text
    scores = [r.score for r in results]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert len(results) == 10  # the default max_num_results; 13 chunks are visible
    # A paraphrase with no word of "launch code" still finds it (the vector half of the ranking).
    assert world.names(world.search("Bluebird pilots secret"))[0] == FACT_FILE


@on_every_store
def test_query_lists_merge_their_results(world: World) -> None:
    raw = world.client.vector_stores.with_raw_response.search(
        world.vector_store_id,
        query=["parking permit renewal", "photosynthesis glucose oxygen"],
        max_num_results=2,
        rewrite_query=True,  # accepted; without a rewrite model the queries stay as they are
    )
    body = raw.http_response.json()
    assert body["search_query"] == ["parking permit renewal", "photosynthesis glucose oxygen"]
    assert set(world.names(raw.parse().data)) == {"parking.txt", "plants.txt"}


@on_every_store
def test_max_num_results_and_score_threshold(world: World) -> None:
    everything = world.search(max_num_results=50)
    assert len(everything) == len(world.file_ids)  # one chunk per file, all ranked by vector
    assert len(world.search(max_num_results=1)) == 1
    assert len(world.search(max_num_results=3)) == 3
    threshold = everything[3].score
    above = world.search(max_num_results=50, ranking_options={"score_threshold": threshold})
    assert 1 <= len(above) < len(everything)
    assert all(r.score >= threshold for r in above)
    for ranker in ("none", "auto", "default-2024-11-15"):
        ranked = world.search(ranking_options={"ranker": ranker})
        assert world.names(ranked)[0] == FACT_FILE


FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "eq", "key": "team", "value": "finance"}, {"report.txt", "travel.txt"}),
    (
        {"type": "ne", "key": "team", "value": "finance"},
        {*DISTRACTORS, FACT_FILE} - {"report.txt", "travel.txt"},
    ),
    ({"type": "eq", "key": "public", "value": False}, {"travel.txt", FACT_FILE}),
    ({"type": "gt", "key": "year", "value": 2023}, {"report.txt", FACT_FILE}),
    ({"type": "gte", "key": "year", "value": 2023}, {"report.txt", "travel.txt", FACT_FILE}),
    ({"type": "lt", "key": "rating", "value": 4.5}, {"travel.txt"}),
    ({"type": "lte", "key": "year", "value": 2022}, {"design.md"}),
    ({"type": "in", "key": "team", "value": ["design", "aerospace"]}, {"design.md", FACT_FILE}),
    (
        {"type": "nin", "key": "team", "value": ["finance", "design"]},
        {*DISTRACTORS, FACT_FILE} - {"report.txt", "travel.txt", "design.md"},
    ),
    (
        {
            "type": "and",
            "filters": [
                {"type": "eq", "key": "team", "value": "finance"},
                {"type": "eq", "key": "public", "value": True},
            ],
        },
        {"report.txt"},
    ),
    (
        {
            "type": "or",
            "filters": [
                {"type": "eq", "key": "team", "value": "design"},
                {
                    "type": "and",
                    "filters": [
                        {"type": "gte", "key": "rating", "value": 5},
                        {"type": "eq", "key": "public", "value": False},
                    ],
                },
            ],
        },
        {"design.md", FACT_FILE},
    ),
]


@on_every_store
@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=lambda v: str(v)[:50])
def test_filters(world: World, flt: dict[str, Any], expected: set[str]) -> None:
    results = world.search(filters=flt, max_num_results=50)
    assert set(world.names(results)) == expected
    for result in results:
        name = world.names([result])[0]
        assert result.attributes == ATTRIBUTES.get(name, {})


@on_every_store
def test_search_marks_the_store_active(world: World) -> None:
    before = world.client.vector_stores.retrieve(world.vector_store_id).last_active_at
    assert before is not None
    time.sleep(1.1)  # last_active_at has whole seconds
    world.search("kitchen")
    after = world.client.vector_stores.retrieve(world.vector_store_id).last_active_at
    assert after is not None and after > before


@on_every_store
def test_cancelled_and_in_progress_files_never_match(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="cancel")
    marker = "zanzibar quokka"
    big = " ".join(filler_sentences(3000, seed=9)) + f" The {marker} is here."
    ids = [_upload(client, f"big-{i}.txt", f"{marker} {i}. {big}") for i in range(4)]
    batch = client.vector_stores.file_batches.create(
        store.id,
        file_ids=ids,
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
        },
    )
    # While files are ingesting: whatever matches belongs to a file completed by then.
    during = client.vector_stores.search(store.id, query=marker, max_num_results=50).data
    statuses = {f.id: f.status for f in client.vector_stores.files.list(store.id, limit=100)}
    assert {r.file_id for r in during} <= {i for i, s in statuses.items() if s == "completed"}
    client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    deadline = time.monotonic() + 60
    while client.vector_stores.file_batches.retrieve(
        batch.id, vector_store_id=store.id
    ).file_counts.in_progress:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    statuses = {f.id: f.status for f in client.vector_stores.files.list(store.id, limit=100)}
    assert "cancelled" in statuses.values(), statuses
    after = client.vector_stores.search(store.id, query=marker, max_num_results=50).data
    completed = {i for i, s in statuses.items() if s == "completed"}
    assert {r.file_id for r in after} <= completed
    assert bool(after) == bool(completed)


@on_every_store
def test_a_detached_file_stops_matching(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="detach")
    file_id = _upload(client, "moon.txt", "The moon base Tycho stores water ice in crater vaults.")
    done = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=file_id, poll_interval_ms=50
    )
    assert done.status == "completed"
    assert [r.file_id for r in client.vector_stores.search(store.id, query="Tycho ice").data] == [
        file_id
    ]
    client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    assert client.vector_stores.search(store.id, query="Tycho ice").data == []


# --- bad requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any]
    param: str | None


BAD_REQUESTS = [
    Case("query missing", {}, "query"),
    Case("query empty", {"query": ""}, "query"),
    Case("query blank", {"query": "  \n "}, "query"),
    Case("query list empty", {"query": []}, "query"),
    Case("query list with an empty item", {"query": ["ok", ""]}, "query[1]"),
    Case("query list too long", {"query": ["q"] * 11}, "query"),
    Case("query too long", {"query": "q" * 10_001}, "query"),
    Case("query a number", {"query": 5}, "query"),
    Case("query list of numbers", {"query": [1, 2]}, "query[0]"),
    Case("max_num_results 0", {"query": "q", "max_num_results": 0}, "max_num_results"),
    Case("max_num_results 51", {"query": "q", "max_num_results": 51}, "max_num_results"),
    Case("max_num_results a string", {"query": "q", "max_num_results": "5"}, "max_num_results"),
    Case("max_num_results a decimal", {"query": "q", "max_num_results": 2.5}, "max_num_results"),
    Case("rewrite_query a string", {"query": "q", "rewrite_query": "yes"}, "rewrite_query"),
    Case(
        "unknown ranker",
        {"query": "q", "ranking_options": {"ranker": "fast"}},
        "ranking_options.ranker",
    ),
    Case(
        "threshold above 1",
        {"query": "q", "ranking_options": {"score_threshold": 1.5}},
        "ranking_options.score_threshold",
    ),
    Case(
        "threshold below 0",
        {"query": "q", "ranking_options": {"score_threshold": -0.1}},
        "ranking_options.score_threshold",
    ),
    Case(
        "unknown ranking option",
        {"query": "q", "ranking_options": {"boost": 1}},
        "ranking_options.boost",
    ),
    Case("unknown parameter", {"query": "q", "top_k": 3}, "top_k"),
    Case("filters a string", {"query": "q", "filters": "team=finance"}, "filters"),
    Case(
        "filter type unknown",
        {"query": "q", "filters": {"type": "like", "key": "a", "value": "b"}},
        "filters.type",
    ),
    Case(
        "filter without key", {"query": "q", "filters": {"type": "eq", "value": "b"}}, "filters.key"
    ),
    Case(
        "filter without value",
        {"query": "q", "filters": {"type": "eq", "key": "a"}},
        "filters.value",
    ),
    Case(
        "in with a scalar",
        {"query": "q", "filters": {"type": "in", "key": "a", "value": "b"}},
        "filters.value",
    ),
    Case(
        "gt with a boolean",
        {"query": "q", "filters": {"type": "gt", "key": "a", "value": True}},
        "filters.value",
    ),
    Case(
        "eq with an object",
        {"query": "q", "filters": {"type": "eq", "key": "a", "value": {}}},
        "filters.value",
    ),
    Case("compound without filters", {"query": "q", "filters": {"type": "and"}}, "filters.filters"),
    Case(
        "compound empty",
        {"query": "q", "filters": {"type": "or", "filters": []}},
        "filters.filters",
    ),
    Case(
        "nested filter bad",
        {
            "query": "q",
            "filters": {"type": "or", "filters": [{"type": "eq", "key": 1, "value": 2}]},
        },
        "filters.filters[0].key",
    ),
    Case(
        "filter extra field",
        {"query": "q", "filters": {"type": "eq", "key": "a", "value": 1, "weight": 2}},
        "filters.weight",
    ),
]


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(BAD_REQUESTS) >= 30
    assert len({case.name for case in BAD_REQUESTS}) == len(BAD_REQUESTS)


@on_every_store
@pytest.mark.parametrize("case", BAD_REQUESTS, ids=lambda case: case.name)
def test_bad_request(world: World, case: Case) -> None:
    rows = RowCounts(world.stack.database_url)
    try:
        before = rows()
        with httpx.Client(
            base_url=world.stack.base_url,
            headers={"Authorization": f"Bearer {world.key}", "OpenAI-Beta": "assistants=v2"},
        ) as http:
            response = http.post(f"/vector_stores/{world.vector_store_id}/search", json=case.body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["message"]
        assert error["param"] == case.param, error
        assert rows() == before
    finally:
        rows.close()


@on_every_store
def test_another_projects_store_is_like_no_store(world: World) -> None:
    with pytest.raises(openai.NotFoundError) as theirs:
        world.other.vector_stores.search(world.vector_store_id, query=QUERY)
    with pytest.raises(openai.NotFoundError) as missing:
        world.other.vector_stores.search("vs_" + "x" * 24, query=QUERY)
    assert str(theirs.value).replace(world.vector_store_id, "vs_" + "x" * 24) == str(missing.value)
    assert theirs.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@on_every_store
def test_a_store_built_with_another_model_is_400(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="old model")
    DirectDB(world.stack.database_url).write(
        lambda conn: conn.execute(
            update(vector_stores)
            .where(vector_stores.c.id == store.id)
            .values(embedding_model="text-embedding-ada-002", embedding_dims=1536)
        )
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.vector_stores.search(store.id, query=QUERY)
    assert "text-embedding-ada-002" in raised.value.message
    assert raised.value.code == "embedding_model_mismatch"


# --- expiry (a stack whose "day" is one second) ---------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def short_day_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="search-expiry",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_VECTOR_STORE_DAY_S": "1"},
    ) as stack:
        yield stack


def test_an_expired_store_is_400(short_day_stack: Stack) -> None:
    client = short_day_stack.client()
    store = client.vector_stores.create(
        name="short-lived", expires_after={"anchor": "last_active_at", "days": 1}
    )
    deadline = time.monotonic() + 60
    while client.vector_stores.retrieve(store.id).status != "expired":
        assert time.monotonic() < deadline, "the store never expired"
        time.sleep(0.2)
    with pytest.raises(openai.BadRequestError) as raised:
        client.vector_stores.search(store.id, query=QUERY)
    assert "expired" in raised.value.message

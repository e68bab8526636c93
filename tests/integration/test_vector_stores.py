"""Vector stores end to end, through the real `openai` SDK, on SQLite and PostgreSQL: the flows a
migrating user runs (`files.create` → `vector_stores.create(file_ids=…)` → poll;
`files.upload_and_poll`; `file_batches.upload_and_poll` with a dozen files of mixed types, a real
multi-page PDF and a DOCX among them), exact statuses, counts and pagination, attributes, the
list filter, the parsed-content endpoint, files that cannot be parsed (they end `failed` with
OpenAI's `last_error` codes, never a 4xx), the delete cascades (checked in the database: no chunk
left behind), the `tool_resources.file_search.vector_stores` creation helpers, durable expiry
(with a short configured day), and a table of bad requests that each answer an OpenAI-shaped 4xx
and write nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from assistants.retrieval import chunk_document, parse_document
from assistants.testing.scripted_model import Reply, ScriptedModel
from tests.conftest import started_stack, wait_for_status
from tests.support import documents
from tests.support.contract import validate
from tests.support.stack import Stack
from tests.support.vector_stores import DbProbe, counts, upload, wait_store

COMPLETED_2 = {"in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2}


def _key(stack: Stack, project: str) -> str:
    return stack.cli("keys", "create", "--project", project).splitlines()[0].strip()


@dataclass
class World:
    """A project of its own (so its lists are exactly this module's), a second project, and the
    database behind them."""

    stack: Stack
    client: openai.OpenAI
    key: str
    other: openai.OpenAI
    other_key: str
    probe: DbProbe
    ids: dict[str, str] = field(default_factory=dict)

    def http(self, key: str | None = None) -> httpx.Client:
        return self.stack.http(key or self.key)


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    key, other_key = _key(stack, f"vs-{suffix}"), _key(stack, f"vs-other-{suffix}")
    probe = DbProbe(stack.database_url)
    try:
        yield World(
            stack=stack,
            client=stack.client(api_key=key),
            key=key,
            other=stack.client(api_key=other_key),
            other_key=other_key,
            probe=probe,
        )
    finally:
        probe.close()


def _raw(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.http_response.json()
    return body


def expected_chunks(data: bytes, name: str, max_tokens: int = 800, overlap: int = 400) -> int:
    """What ingestion must produce for this file: the library's own parse and chunk."""
    return len(chunk_document(parse_document(data, name), max_tokens, overlap))


# --- the SDK flows ------------------------------------------------------------------------------


def test_create_store_with_file_ids_and_poll(world: World) -> None:
    client = world.client
    penguins = b"Emperor penguins breed in the Antarctic winter. " * 300
    otters = b"# Otters\n\nSea otters hold hands while they sleep, so they do not drift apart.\n"
    a, b = upload(client, "penguins.txt", penguins), upload(client, "otters.md", otters)

    raw = client.vector_stores.with_raw_response.create(
        name="animals", file_ids=[a.id, b.id], metadata={"team": "zoo"}
    )
    created = _raw(raw)
    validate("VectorStoreObject", created)
    assert created["object"] == "vector_store" and created["id"].startswith("vs_")
    assert created["name"] == "animals" and created["metadata"] == {"team": "zoo"}
    assert created["file_counts"]["total"] == 2
    assert created["expires_at"] is None and "expires_after" not in created

    store = wait_store(client, created["id"])
    assert store.status == "completed"
    assert counts(store) == COMPLETED_2
    files = {f.id: f for f in client.vector_stores.files.list(vector_store_id=store.id)}
    assert set(files) == {a.id, b.id}
    for vs_file in files.values():
        assert vs_file.status == "completed" and vs_file.last_error is None
        assert vs_file.chunking_strategy is not None
        assert vs_file.chunking_strategy.model_dump() == {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        }
        assert vs_file.usage_bytes > 0
    assert store.usage_bytes == sum(f.usage_bytes for f in files.values())

    # Exactly the chunks the library makes, each once.
    for file_obj, data, name in ((a, penguins, "penguins.txt"), (b, otters, "otters.md")):
        n = expected_chunks(data, name)
        assert world.probe.chunk_positions(store.id, file_obj.id) == list(range(n))

    with world.http() as http:
        got = http.get(f"/vector_stores/{store.id}")
        assert got.headers["openai-poll-after-ms"] == "50"
        validate("VectorStoreObject", got.json())
        listed = http.get(f"/vector_stores/{store.id}/files").json()
        validate("ListVectorStoreFilesResponse", listed)
        for item in listed["data"]:
            validate("VectorStoreFileObject", item)


def test_upload_and_poll_attributes_filter_and_content(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="notes")
    text = "\n\n".join(documents.filler_sentences(120, seed=7)) + "\n\nThe vault code is 4417.\n"
    data = text.encode()
    static = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
    }
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id,
        file=("vault.md", data),
        attributes={"author": "ada", "year": 2026, "draft": False},
        chunking_strategy=static,  # type: ignore[arg-type]
    )
    assert done.status == "completed" and done.last_error is None
    assert done.attributes == {"author": "ada", "year": 2026, "draft": False}
    assert done.chunking_strategy is not None
    assert done.chunking_strategy.model_dump() == static
    n = expected_chunks(data, "vault.md", 200, 50)
    assert n > 3
    assert world.probe.chunk_positions(store.id, done.id) == list(range(n))

    raw = client.vector_stores.files.with_raw_response.retrieve(done.id, vector_store_id=store.id)
    assert raw.headers["openai-poll-after-ms"] == "50"
    validate("VectorStoreFileObject", _raw(raw))

    updated = client.vector_stores.files.update(
        done.id, vector_store_id=store.id, attributes={"author": "grace", "score": 0.5}
    )
    assert updated.attributes == {"author": "grace", "score": 0.5}
    again = client.vector_stores.files.retrieve(done.id, vector_store_id=store.id)
    assert again.attributes == {"author": "grace", "score": 0.5} and again.status == "completed"

    content = client.vector_stores.files.content(done.id, vector_store_id=store.id)
    parts = list(content)
    assert [p.type for p in parts] == ["text"]
    assert parts[0].text == parse_document(data, "vault.md").text
    with world.http() as http:
        body = http.get(f"/vector_stores/{store.id}/files/{done.id}/content").json()
    validate("VectorStoreFileContentResponse", body)
    assert body["has_more"] is False and body["next_page"] is None

    # The status filter.
    failed = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id, file_id=upload(client, "noise.bin", bytes(range(256)) * 8).id
    )
    assert failed.status == "failed"
    by_status = {
        status: [f.id for f in client.vector_stores.files.list(store.id, filter=status)]
        for status in ("completed", "failed", "in_progress", "cancelled")
    }
    assert by_status == {
        "completed": [done.id],
        "failed": [failed.id],
        "in_progress": [],
        "cancelled": [],
    }


def test_file_batch_upload_and_poll_with_a_dozen_mixed_files(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="mixed")
    pages = documents.filler_pages(6, seed=3)
    pages[4] += "\n\nThe lighthouse keeper's name is Ingrid Solberg."
    files: list[tuple[str, bytes]] = [
        ("report.pdf", documents.make_pdf(pages)),
        (
            "memo.docx",
            documents.make_docx(
                ["The quarterly offsite moves to Bergen.", *documents.filler_sentences(20)],
                heading="Memo",
                table=[["city", "date"], ["Bergen", "May 4"]],
            ),
        ),
        ("deck.pptx", documents.make_pptx([("Roadmap", "Ship the harbor release"), ("Q3", "x")])),
        ("notes.txt", b"Plain notes about the copper kettle.\n"),
        ("readme.md", b"# Readme\n\nInstall with `make dev`.\n"),
        ("data.json", b'{"city": "Oslo", "population": 709000}'),
        ("page.html", b"<html><body><h1>Title</h1><p>Hello <b>harbor</b>.</p></body></html>"),
        ("script.py", b"def greet(name):\n    return f'hello {name}'\n"),
        ("main.c", b'#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'),
        ("app.ts", b"export const answer: number = 42;\n"),
        ("style.css", b"body { color: #333; }\n"),
        ("paper.tex", b"\\section{Intro} Lanterns in the orchard.\n"),
    ]
    batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=files)
    assert batch.object == "vector_store.files_batch" and batch.status == "completed"
    assert counts(batch) == {
        "in_progress": 0,
        "completed": 12,
        "failed": 0,
        "cancelled": 0,
        "total": 12,
    }
    listed = list(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id))
    assert len(listed) == 12 and {f.status for f in listed} == {"completed"}
    by_name = {
        client.files.retrieve(f.id).filename: f.id for f in listed
    }  # the batch lists exactly the uploads
    assert set(by_name) == {name for name, _ in files}
    for name, data in files:
        n = expected_chunks(data, name)
        assert world.probe.chunk_positions(store.id, by_name[name]) == list(range(n)), name

    # The PDF's parsed content comes back a page per item; the planted fact is on page 5.
    pdf_pages = list(
        client.vector_stores.files.content(by_name["report.pdf"], vector_store_id=store.id)
    )
    assert len(pdf_pages) == 6
    assert "Ingrid Solberg" in (pdf_pages[4].text or "")
    docx_text = "".join(
        p.text or ""
        for p in client.vector_stores.files.content(by_name["memo.docx"], vector_store_id=store.id)
    )
    assert "offsite moves to Bergen" in docx_text and "May 4" in docx_text

    store_now = client.vector_stores.retrieve(store.id)
    assert store_now.status == "completed" and store_now.file_counts.completed == 12
    with world.http() as http:
        got = http.get(f"/vector_stores/{store.id}/file_batches/{batch.id}")
        assert got.headers["openai-poll-after-ms"] == "50"
        validate("VectorStoreFileBatchObject", got.json())


def test_unparsable_files_end_failed_not_4xx(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="bad files")
    binary = upload(client, "archive.bin", bytes(range(256)) * 64)
    scanned = upload(client, "scan.pdf", documents.make_image_pdf(2))
    latin1 = upload(client, "legacy.txt", "Café crème brûlée".encode("latin-1"))
    empty = upload(client, "empty.md", b"   \n\n  ")
    ok = upload(client, "fine.txt", b"A perfectly readable file.\n")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[binary.id, scanned.id, latin1.id, empty.id, ok.id]
    )
    assert counts(batch) == {
        "in_progress": 0,
        "completed": 1,
        "failed": 4,
        "cancelled": 0,
        "total": 5,
    }
    assert batch.status == "completed"  # a batch completes once nothing is in progress
    errors = {
        f.id: f.last_error.code if f.last_error else None
        for f in client.vector_stores.files.list(store.id)
    }
    assert errors == {
        binary.id: "unsupported_file",
        scanned.id: "invalid_file",
        latin1.id: "unsupported_file",
        empty.id: "invalid_file",
        ok.id: None,
    }
    for file_obj in (binary, scanned, latin1, empty):
        got = client.vector_stores.files.retrieve(file_obj.id, vector_store_id=store.id)
        assert got.status == "failed" and got.usage_bytes == 0
        assert got.last_error is not None and got.last_error.message
        assert world.probe.chunks(store.id, file_obj.id) == 0
    assert client.vector_stores.retrieve(store.id).status == "completed"


def test_pagination_is_exact(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="pages")
    made = [upload(client, f"p{i}.txt", f"page {i} about lanterns".encode()).id for i in range(7)]
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=made
    )
    assert batch.file_counts.completed == 7
    newest_first = list(reversed(made))

    first = client.vector_stores.files.list(store.id, limit=3)
    assert [f.id for f in first.data] == newest_first[:3] and first.has_more
    second = client.vector_stores.files.list(store.id, limit=3, after=first.data[-1].id)
    assert [f.id for f in second.data] == newest_first[3:6] and second.has_more
    third = client.vector_stores.files.list(store.id, limit=3, after=second.data[-1].id)
    assert [f.id for f in third.data] == newest_first[6:] and not third.has_more
    assert [f.id for f in client.vector_stores.files.list(store.id, limit=2)] == newest_first
    assert [f.id for f in client.vector_stores.files.list(store.id, order="asc", limit=4)] == made
    before = client.vector_stores.files.list(store.id, limit=2, before=newest_first[4])
    assert [f.id for f in before.data] == newest_first[2:4] and before.has_more
    batch_page = client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id, limit=5, order="asc"
    )
    assert [f.id for f in batch_page.data] == made[:5] and batch_page.has_more
    with world.http() as http:
        body = http.get(f"/vector_stores/{store.id}/files", params={"limit": 2}).json()
    assert body["first_id"] == newest_first[0] and body["last_id"] == newest_first[1]

    # Stores paginate the same way (a project of its own: the list is exactly these).
    fresh = world.stack.client(api_key=_key(world.stack, f"vs-pages-{uuid.uuid4().hex[:8]}"))
    stores = [fresh.vector_stores.create(name=f"s{i}").id for i in range(5)]
    assert [s.id for s in fresh.vector_stores.list(limit=2)] == list(reversed(stores))
    page = fresh.vector_stores.list(limit=2, order="asc", after=stores[1])
    assert [s.id for s in page.data] == stores[2:4] and page.has_more


def test_batch_with_per_file_attributes_and_chunking(world: World) -> None:
    client = world.client
    store = client.vector_stores.create(name="per file")
    data = "\n\n".join(documents.filler_sentences(80, seed=4)).encode()
    a, b = upload(client, "a.txt", data), upload(client, "b.txt", data)
    small: Any = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
    }
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[
            {"file_id": a.id, "attributes": {"lang": "en", "rank": 1}, "chunking_strategy": small},
            {"file_id": b.id, "attributes": {"lang": "de"}},
        ],
        # Batch-wide values are ignored when `files` is given (the spec).
        attributes={"lang": "xx"},
    )
    assert counts(batch)["completed"] == 2
    got = {f.id: f for f in client.vector_stores.files.list(store.id)}
    assert got[a.id].attributes == {"lang": "en", "rank": 1}
    assert got[b.id].attributes == {"lang": "de"}
    strategies = {
        file_id: vs_file.chunking_strategy.model_dump()["static"]
        for file_id, vs_file in got.items()
        if vs_file.chunking_strategy is not None
    }
    assert strategies == {
        a.id: {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
        b.id: {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
    }
    assert world.probe.chunks(store.id, a.id) == expected_chunks(data, "a.txt", 100, 20)
    assert world.probe.chunks(store.id, b.id) == expected_chunks(data, "b.txt")


def test_reattaching_a_file_reingests_it_without_duplicates(world: World) -> None:
    client = world.client
    data = "\n\n".join(documents.filler_sentences(200, seed=11)).encode()
    file_obj = upload(client, "twice.txt", data)
    store = client.vector_stores.create(name="twice", file_ids=[file_obj.id])
    wait_store(client, store.id)
    static = {"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 0}}
    again = client.vector_stores.files.create_and_poll(
        vector_store_id=store.id,
        file_id=file_obj.id,
        chunking_strategy=static,  # type: ignore[arg-type]
    )
    assert again.status == "completed"
    assert counts(client.vector_stores.retrieve(store.id)) == {
        "in_progress": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
    }
    n = expected_chunks(data, "twice.txt", 300, 0)
    assert world.probe.chunk_positions(store.id, file_obj.id) == list(range(n))


def test_delete_cascades(world: World) -> None:
    client = world.client
    a = upload(client, "a.txt", b"Alpha file about orchards. " * 100)
    b = upload(client, "b.txt", b"Beta file about glaciers. " * 100)
    store = client.vector_stores.create(name="cascade", file_ids=[a.id, b.id])
    assert counts(wait_store(client, store.id)) == COMPLETED_2
    assert world.probe.chunks(store.id, a.id) > 0 and world.probe.chunks(store.id, b.id) > 0
    b_usage = client.vector_stores.files.retrieve(b.id, vector_store_id=store.id).usage_bytes

    # Deleting the file takes it out of the store, chunks and all, in the same transaction.
    assert client.files.delete(a.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(a.id, vector_store_id=store.id)
    assert world.probe.chunks(store.id, a.id) == 0
    after = client.vector_stores.retrieve(store.id)
    assert after.file_counts.total == 1 and after.usage_bytes == b_usage

    # Removing a file from the store keeps the file.
    removed = client.vector_stores.files.delete(b.id, vector_store_id=store.id)
    assert removed.deleted and removed.object == "vector_store.file.deleted"
    assert client.files.retrieve(b.id).id == b.id
    assert world.probe.chunks(store.id) == 0
    assert counts(client.vector_stores.retrieve(store.id))["total"] == 0

    # Deleting a store deletes its files' rows and chunks, not the files.
    c = upload(client, "c.txt", b"Gamma file about canyons. " * 100)
    other = client.vector_stores.create(name="doomed", file_ids=[c.id])
    wait_store(client, other.id)
    assert world.probe.chunks(other.id) > 0
    deleted = client.vector_stores.delete(other.id)
    assert deleted.deleted and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(other.id)
    assert world.probe.chunks(other.id) == 0
    assert client.files.retrieve(c.id).id == c.id
    assert other.id not in [s.id for s in client.vector_stores.list(limit=100)]

    # ... and takes its id out of every assistant's and thread's tool_resources.
    kept = client.vector_stores.create(name="kept")
    doomed = client.vector_stores.create(name="doomed too")
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [doomed.id]}},
    )
    thread = client.beta.threads.create(
        tool_resources={"file_search": {"vector_store_ids": [kept.id]}}
    )
    client.beta.threads.update(
        thread.id, tool_resources={"file_search": {"vector_store_ids": [doomed.id]}}
    )
    assert client.vector_stores.delete(doomed.id).deleted
    assistant_after = client.beta.assistants.retrieve(assistant.id)
    thread_after = client.beta.threads.retrieve(thread.id)
    assert assistant_after.tool_resources is not None
    assert assistant_after.tool_resources.file_search is not None
    assert assistant_after.tool_resources.file_search.vector_store_ids == []
    assert thread_after.tool_resources is not None
    assert thread_after.tool_resources.file_search is not None
    assert thread_after.tool_resources.file_search.vector_store_ids == []


def test_creation_helpers(world: World, model: ScriptedModel) -> None:
    client = world.client
    doc = upload(client, "handbook.md", b"# Handbook\n\nLunch is served at noon.\n")
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={
            "file_search": {"vector_stores": [{"file_ids": [doc.id], "metadata": {"k": "v"}}]}
        },
    )
    assert assistant.tool_resources is not None and assistant.tool_resources.file_search
    (assistant_store,) = assistant.tool_resources.file_search.vector_store_ids or []
    store = wait_store(client, assistant_store)
    assert store.metadata == {"k": "v"} and store.expires_after is None
    assert counts(store)["completed"] == 1
    again = client.beta.assistants.retrieve(assistant.id)
    assert again.tool_resources is not None and again.tool_resources.file_search
    assert again.tool_resources.file_search.vector_store_ids == [assistant_store]

    thread = client.beta.threads.create(
        tool_resources={
            "file_search": {
                "vector_stores": [
                    {
                        "file_ids": [doc.id],
                        "chunking_strategy": {
                            "type": "static",
                            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 10},
                        },
                    }
                ]
            }
        }
    )
    assert thread.tool_resources is not None and thread.tool_resources.file_search
    (thread_store,) = thread.tool_resources.file_search.vector_store_ids or []
    store = wait_store(client, thread_store)
    # Thread stores expire 7 days after they were last active (OpenAI's default).
    assert store.expires_after is not None and store.expires_after.days == 7
    assert store.expires_at == (store.last_active_at or 0) + 7 * 86_400
    vs_file = client.vector_stores.files.retrieve(doc.id, vector_store_id=thread_store)
    assert vs_file.chunking_strategy is not None
    assert vs_file.chunking_strategy.model_dump()["static"]["max_chunk_size_tokens"] == 100

    # An existing store by id; and create-and-run's thread helper.
    linked = client.beta.assistants.create(
        model="gpt-4o", tool_resources={"file_search": {"vector_store_ids": [assistant_store]}}
    )
    assert linked.tool_resources is not None and linked.tool_resources.file_search
    assert linked.tool_resources.file_search.vector_store_ids == [assistant_store]
    model.enqueue(Reply(text="Noon."))
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={
            "messages": [{"role": "user", "content": "When is lunch?"}],
            "tool_resources": {"file_search": {"vector_stores": [{"file_ids": [doc.id]}]}},
        },
    )
    run_thread = client.beta.threads.retrieve(run.thread_id)
    assert run_thread.tool_resources is not None and run_thread.tool_resources.file_search
    (run_store,) = run_thread.tool_resources.file_search.vector_store_ids or []
    assert run_store not in (assistant_store, thread_store)
    assert counts(wait_store(client, run_store))["completed"] == 1
    assert wait_for_status(client, run.thread_id, run.id, {"completed", "failed"}).status == (
        "completed"
    )


# --- bad input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    message: str  # substring of the error message; `{…}` filled from the world's ids
    param: str | None = None
    code: str | None = None
    json: Any = None
    params: dict[str, str] | None = None
    other_project: bool = False  # sent with the second project's key


SEVENTEEN = {f"k{i}": "v" for i in range(17)}
VS = "/vector_stores/{vs}"
STATIC = "chunking_strategy.static"


def _static(size: Any, overlap: Any) -> dict[str, Any]:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


CASES = [
    # --- stores ---
    Case("chunk size below 100", "POST", "/vector_stores", 400, "Expected a value >= 100",
         f"{STATIC}.max_chunk_size_tokens", "integer_below_min_value",
         json={"file_ids": ["{file}"], "chunking_strategy": _static(99, 0)}),
    Case("chunk size above 4096", "POST", "/vector_stores", 400, "Expected a value <= 4096",
         f"{STATIC}.max_chunk_size_tokens", "integer_above_max_value",
         json={"chunking_strategy": _static(5000, 0)}),
    Case("overlap above half", "POST", "/vector_stores", 400, "must not exceed half",
         f"{STATIC}.chunk_overlap_tokens", "invalid_value",
         json={"file_ids": ["{file}"], "chunking_strategy": _static(800, 401)}),
    Case("negative overlap", "POST", "/vector_stores", 400, "Expected a value >= 0",
         f"{STATIC}.chunk_overlap_tokens", "integer_below_min_value",
         json={"chunking_strategy": _static(800, -1)}),
    Case("chunking type dynamic", "POST", "/vector_stores", 400,
         "Invalid value: 'dynamic'. Supported values are: 'auto' and 'static'.",
         "chunking_strategy.type", "invalid_value",
         json={"chunking_strategy": {"type": "dynamic"}}),
    Case("17 metadata keys", "POST", "/vector_stores", 400,
         "Expected an object with at most 16 properties", "metadata", "invalid_value",
         json={"metadata": SEVENTEEN}),
    Case("unknown file id", "POST", "/vector_stores", 400,
         "no file found with id 'file-missing'", "file_ids[1]", "invalid_value",
         json={"file_ids": ["{file}", "file-missing"]}),
    Case("another project's file id", "POST", "/vector_stores", 400,
         "no file found with id '{theirs}'", "file_ids[0]", "invalid_value",
         json={"file_ids": ["{theirs}"]}),
    Case("501 file ids", "POST", "/vector_stores", 400,
         "Expected an array with maximum length 500", "file_ids", "array_above_max_length",
         json={"file_ids": [f"file-{i}" for i in range(501)]}),
    Case("expires_after 0 days", "POST", "/vector_stores", 400, "Expected a value >= 1",
         "expires_after.days", "integer_below_min_value",
         json={"expires_after": {"anchor": "last_active_at", "days": 0}}),
    Case("expires_after 366 days", "POST", "/vector_stores", 400, "Expected a value <= 365",
         "expires_after.days", "integer_above_max_value",
         json={"expires_after": {"anchor": "last_active_at", "days": 366}}),
    Case("expires_after wrong anchor", "POST", "/vector_stores", 400,
         "Invalid value: 'created_at'", "expires_after.anchor", "invalid_value",
         json={"expires_after": {"anchor": "created_at", "days": 3}}),
    Case("unknown store parameter", "POST", "/vector_stores", 400,
         "Unknown parameter: 'dimensions'.", "dimensions", "unknown_parameter",
         json={"dimensions": 3}),
    Case("modify expires_after days as a string", "POST", VS, 400,
         "expected an integer, but got a string", "expires_after.days", "invalid_type",
         json={"expires_after": {"anchor": "last_active_at", "days": "7"}}),
    Case("retrieve unknown store", "GET", "/vector_stores/vs_missing", 404,
         "No vector store found with id 'vs_missing'."),
    Case("modify another project's store", "POST", VS, 404,
         "No vector store found with id '{vs}'.", json={"name": "mine now"}, other_project=True),
    Case("delete another project's store", "DELETE", VS, 404,
         "No vector store found with id '{vs}'.", other_project=True),
    Case("list limit 0", "GET", "/vector_stores", 400, "Expected a value >= 1", "limit",
         "integer_below_min_value", params={"limit": "0"}),
    Case("list after unknown id", "GET", f"{VS}/files", 400, "Invalid 'after'", "after",
         params={"after": "file-nope"}),
    # --- vector-store files ---
    Case("attach unknown file", "POST", f"{VS}/files", 400,
         "no file found with id 'file-missing'", "file_id", "invalid_value",
         json={"file_id": "file-missing"}),
    Case("attach another project's file", "POST", f"{VS}/files", 400,
         "no file found with id '{theirs}'", "file_id", "invalid_value",
         json={"file_id": "{theirs}"}),
    Case("attach to unknown store", "POST", "/vector_stores/vs_missing/files", 404,
         "No vector store found with id 'vs_missing'.", json={"file_id": "{file}"}),
    Case("attach to another project's store", "POST", f"{VS}/files", 404,
         "No vector store found with id '{vs}'.", json={"file_id": "{theirs}"},
         other_project=True),
    Case("attach without file_id", "POST", f"{VS}/files", 400,
         "Missing required parameter: 'file_id'.", "file_id", json={}),
    Case("17 attributes", "POST", f"{VS}/files", 400,
         "Expected an object with at most 16 properties", "attributes", "invalid_value",
         json={"file_id": "{file}", "attributes": SEVENTEEN}),
    Case("attribute key of 65 characters", "POST", f"{VS}/files", 400,
         "Expected a key with at most 64 characters", "attributes", "invalid_value",
         json={"file_id": "{file}", "attributes": {"k" * 65: "v"}}),
    Case("attribute value of 513 characters", "POST", f"{VS}/files", 400,
         "Expected a string with at most 512 characters", "attributes", "invalid_value",
         json={"file_id": "{file}", "attributes": {"note": "x" * 513}}),
    Case("attribute value an object", "POST", f"{VS}/files", 400,
         "must be a string, a number or a boolean, but got an object", "attributes",
         "invalid_value", json={"file_id": "{file}", "attributes": {"nested": {"a": 1}}}),
    Case("attribute value null", "POST", f"{VS}/files", 400,
         "must be a string, a number or a boolean, but got null", "attributes", "invalid_value",
         json={"file_id": "{file}", "attributes": {"gone": None}}),
    Case("file chunking overlap above half", "POST", f"{VS}/files", 400,
         "must not exceed half", f"{STATIC}.chunk_overlap_tokens", "invalid_value",
         json={"file_id": "{file}", "chunking_strategy": _static(100, 51)}),
    Case("update attributes without attributes", "POST", f"{VS}/files/{{file}}", 400,
         "Missing required parameter: 'attributes'.", "attributes", json={}),
    Case("update attributes of a file not in the store", "POST", f"{VS}/files/{{theirs}}",
         404, "No file found with id '{theirs}' in vector store '{vs}'.", "file_id",
         json={"attributes": {"a": "b"}}),
    Case("retrieve a file not in the store", "GET", f"{VS}/files/file-missing", 404,
         "No file found with id 'file-missing'", "file_id"),
    Case("content of a file not in the store", "GET", f"{VS}/files/file-missing/content", 404,
         "No file found with id 'file-missing'", "file_id"),
    Case("list filter unknown", "GET", f"{VS}/files", 400,
         "Invalid value: 'done'. Supported values are: 'in_progress', 'completed', 'failed', "
         "and 'cancelled'.", "filter", "invalid_value", params={"filter": "done"}),
    # --- file batches ---
    Case("batch with file_ids and files", "POST", f"{VS}/file_batches", 400,
         "'file_ids' and 'files' are mutually exclusive", "files", "invalid_value",
         json={"file_ids": ["{file}"], "files": [{"file_id": "{file}"}]}),
    Case("batch with neither", "POST", f"{VS}/file_batches", 400,
         "Missing required parameter: 'file_ids'", "file_ids", json={}),
    Case("batch with no file ids", "POST", f"{VS}/file_batches", 400,
         "Expected an array with minimum length 1", "file_ids", "array_below_min_length",
         json={"file_ids": []}),
    Case("batch of 2001 files", "POST", f"{VS}/file_batches", 400,
         "Expected an array with maximum length 2000", "file_ids", "array_above_max_length",
         json={"file_ids": [f"file-{i}" for i in range(2001)]}),
    Case("batch with an unknown file", "POST", f"{VS}/file_batches", 400,
         "no file found with id 'file-missing'", "files[1].file_id", "invalid_value",
         json={"files": [{"file_id": "{file}"}, {"file_id": "file-missing"}]}),
    Case("batch listing a file twice", "POST", f"{VS}/file_batches", 400,
         "is listed twice", "files[1].file_id", "invalid_value",
         json={"files": [{"file_id": "{file}"}, {"file_id": "{file}"}]}),
    Case("batch with a bad per-file chunking", "POST", f"{VS}/file_batches", 400,
         "Expected a value >= 100", f"files[0].{STATIC}.max_chunk_size_tokens",
         "integer_below_min_value",
         json={"files": [{"file_id": "{file}", "chunking_strategy": _static(10, 0)}]}),
    Case("retrieve unknown batch", "GET", f"{VS}/file_batches/vsfb_missing", 404,
         "No vector store file batch found with id 'vsfb_missing'."),
    Case("cancel unknown batch", "POST", f"{VS}/file_batches/vsfb_missing/cancel", 404,
         "No vector store file batch found with id 'vsfb_missing'."),
    Case("cancel a completed batch", "POST", f"{VS}/file_batches/{{batch}}/cancel", 400,
         "Cannot cancel a vector store file batch with status 'completed'.",
         code="invalid_state"),
    Case("list files of another project's batch", "GET", f"{VS}/file_batches/{{batch}}/files",
         404, "No vector store found with id '{vs}'.", other_project=True),
    # --- the creation helpers and vector_store_ids in tool_resources ---
    Case("assistant with an unknown vector store", "POST", "/assistants", 400,
         "no vector store found with id 'vs_missing'",
         "tool_resources.file_search.vector_store_ids[0]", "invalid_value",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {
             "vector_store_ids": ["vs_missing"]}}}),
    Case("assistant with another project's vector store", "POST", "/assistants", 400,
         "no vector store found with id '{vs}'",
         "tool_resources.file_search.vector_store_ids[0]", "invalid_value",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {
             "vector_store_ids": ["{vs}"]}}}, other_project=True),
    Case("assistant helper with an unknown file", "POST", "/assistants", 400,
         "no file found with id 'file-missing'",
         "tool_resources.file_search.vector_stores[0].file_ids[1]", "invalid_value",
         json={"model": "gpt-4o", "tool_resources": {"file_search": {
             "vector_stores": [{"file_ids": ["{file}", "file-missing"]}]}}}),
    Case("thread helper with another project's file", "POST", "/threads", 400,
         "no file found with id '{theirs}'",
         "tool_resources.file_search.vector_stores[0].file_ids[0]", "invalid_value",
         json={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["{theirs}"]}]}}}),
    Case("create-and-run helper with an unknown file", "POST", "/threads/runs", 400,
         "no file found with id 'file-missing'",
         "thread.tool_resources.file_search.vector_stores[0].file_ids[0]", "invalid_value",
         json={"assistant_id": "{asst}", "thread": {"tool_resources": {"file_search": {
             "vector_stores": [{"file_ids": ["file-missing"]}]}}}}),
    Case("create-and-run top-level helper", "POST", "/threads/runs", 400,
         "Unknown parameter: 'tool_resources.file_search.vector_stores'",
         "tool_resources.file_search.vector_stores", "unknown_parameter",
         json={"assistant_id": "{asst}", "tool_resources": {"file_search": {
             "vector_stores": [{"file_ids": ["{file}"]}]}}}),
    Case("assistant modify with a helper", "POST", "/assistants/{asst}", 400,
         "Unknown parameter: 'tool_resources.file_search.vector_stores'",
         "tool_resources.file_search.vector_stores", "unknown_parameter",
         json={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["{file}"]}]}}}),
    Case("thread modify with an unknown vector store", "POST", "/threads/{thread}", 400,
         "no vector store found with id 'vs_missing'",
         "tool_resources.file_search.vector_store_ids[0]", "invalid_value",
         json={"tool_resources": {"file_search": {"vector_store_ids": ["vs_missing"]}}}),
]  # fmt: skip


@pytest.fixture(scope="module")
def targets(world: World) -> dict[str, str]:
    """The objects the bad requests aim at, all settled (nothing ingesting while rows are
    counted)."""
    client = world.client
    file_obj = upload(client, "target.txt", b"A target file.\n")
    theirs = upload(world.other, "theirs.txt", b"Another project's file.\n")
    store = client.vector_stores.create(name="target", file_ids=[file_obj.id])
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[file_obj.id]
    )
    wait_store(client, store.id)
    return {
        "file": file_obj.id,
        "theirs": theirs.id,
        "vs": store.id,
        "batch": batch.id,
        "asst": client.beta.assistants.create(model="gpt-4o").id,
        "thread": client.beta.threads.create().id,
    }


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(ids) if "{" in value else value
    if isinstance(value, dict):
        return {_fill(k, ids): _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def test_bad_input_table_has_enough_rows() -> None:
    assert len(CASES) >= 20 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(world: World, targets: dict[str, str], case: Case) -> None:
    before = world.probe.table_counts()
    key = world.other_key if case.other_project else world.key
    with world.http(key) as http:
        response = http.request(
            case.method,
            _fill(case.path, targets),
            json=_fill(case.json, targets),
            params=case.params,
        )
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert _fill(case.message, targets) in error["message"], error
    assert error["param"] == case.param, error
    assert error["code"] == case.code, error
    assert response.headers["x-should-retry"] == "false"
    assert world.probe.table_counts() == before  # nothing written


# --- expiry ---------------------------------------------------------------------------------------

DAY_S = 3  # a "day" of the expiry policy lasts this many seconds on this stack


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def expiry_stack(
    request: pytest.FixtureRequest,
    temporal: Any,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="vs-expiry",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_VECTOR_STORE_DAY_S": str(DAY_S)},
    ) as stack:
        yield stack


def _wait_status(client: openai.OpenAI, vector_store_id: str, status: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        store = client.vector_stores.retrieve(vector_store_id)
        if store.status == status:
            return store
        if time.monotonic() > deadline:
            raise TimeoutError(f"{vector_store_id} is {store.status}, wanted {status}")
        time.sleep(0.1)


def test_stores_expire_durably(expiry_stack: Stack) -> None:
    client = expiry_stack.client()
    doc = upload(client, "soon.txt", b"Expiring knowledge about basalt quarries.\n")
    one_day = {"anchor": "last_active_at", "days": 1}
    expiring = client.vector_stores.create(
        name="expiring",
        file_ids=[doc.id],
        expires_after=one_day,  # type: ignore[arg-type]
    )
    assert expiring.expires_after is not None and expiring.expires_after.days == 1
    assert expiring.expires_at == (expiring.last_active_at or 0) + DAY_S
    kept = client.vector_stores.create(name="kept", expires_after=one_day)  # type: ignore[arg-type]
    kept = client.vector_stores.update(kept.id, expires_after=None)
    assert kept.expires_at is None
    later = client.vector_stores.create(name="later")
    later = client.vector_stores.update(later.id, expires_after=one_day)  # type: ignore[arg-type]
    assert later.expires_at is not None
    # Two days (6 s) for the store that is used, so a loaded machine still searches it in time.
    two_days: Any = {"anchor": "last_active_at", "days": 2}
    used = client.vector_stores.create(name="used", file_ids=[doc.id], expires_after=two_days)
    wait_store(client, used.id)
    time.sleep(1.2)
    # Searching is activity: it moves `last_active_at`, and with it `expires_at`.
    client.vector_stores.search(used.id, query="basalt")
    touched = client.vector_stores.retrieve(used.id)
    assert touched.last_active_at is not None and touched.last_active_at > (
        used.last_active_at or 0
    )
    assert touched.expires_at == touched.last_active_at + 2 * DAY_S

    gone = _wait_status(client, expiring.id, "expired", timeout=30)
    assert time.time() >= (gone.expires_at or 0)
    assert counts(gone)["completed"] == 1  # expired, not emptied
    _wait_status(client, later.id, "expired", timeout=30)
    if time.time() < (touched.expires_at or 0) - 0.5:  # the old deadline has passed, not the new
        assert client.vector_stores.retrieve(used.id).status == "completed"
    _wait_status(client, used.id, "expired", timeout=30)
    assert client.vector_stores.retrieve(kept.id).status == "completed"

    # An expired store cannot be searched or filled; it can still be read, renamed, deleted.
    with pytest.raises(openai.BadRequestError) as searched:
        client.vector_stores.search(expiring.id, query="basalt")
    assert "has expired" in searched.value.message
    assert searched.value.code == "vector_store_expired"
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.files.create(vector_store_id=expiring.id, file_id=doc.id)
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.create(vector_store_id=expiring.id, file_ids=[doc.id])
    renamed = client.vector_stores.update(expiring.id, name="old news")
    assert renamed.name == "old news" and renamed.status == "expired"
    assert client.vector_stores.delete(expiring.id).deleted

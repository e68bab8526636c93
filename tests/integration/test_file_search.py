"""file_search in runs, end to end: the seeds' overview flow with citations, streaming, include[],
ranking options, forced tool_choice, project isolation and worker crashes.

The scripted model calls `file_search` and then answers with `【m:i†source】` markers; the real
worker searches the real vector store (offline embeddings, hybrid ranking) as an activity.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from sqlalchemy import update
from sqlalchemy.engine import Connection

from assistants.devserver import TemporalDevServer
from assistants.store.tables import assistants as assistants_table
from assistants.store.tables import vector_stores
from assistants.testing.scripted_model import EmbeddingReply, Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack, wait_for_status
from tests.integration.test_search import DirectDB
from tests.support.stack import Stack

INCLUDE: Any = "step_details.tool_calls[*].file_search.results[*].content"
COOLANT = (
    "The Zorblax reactor is cooled by liquid sodium pumped through three independent loops. "
    "Coolant temperature at the core outlet is 550 degrees Celsius."
)
KITCHEN = (
    "The staff kitchen on the second floor opens at eight. Coffee beans are delivered every "
    "Tuesday, and the espresso machine is descaled monthly."
)
SEARCH = ToolCallSpec("file_search", json.dumps({"queries": ["Zorblax reactor coolant"]}))
ANSWER = "The Zorblax reactor is cooled by liquid sodium【0:0†source】. Ask me more!"


@dataclass
class Library:
    client: openai.OpenAI
    store_id: str
    coolant_id: str
    kitchen_id: str


def _upload(client: openai.OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, text.encode()), purpose="assistants").id


def _wait_store(client: openai.OpenAI, store_id: str) -> None:
    deadline = time.monotonic() + 90
    while client.vector_stores.retrieve(store_id).file_counts.in_progress:
        assert time.monotonic() < deadline, "ingestion did not finish"
        time.sleep(0.2)
    assert client.vector_stores.retrieve(store_id).file_counts.completed >= 2


def _library(client: openai.OpenAI) -> Library:
    coolant = _upload(client, "reactor.txt", COOLANT)
    kitchen = _upload(client, "kitchen.txt", KITCHEN)
    store = client.vector_stores.create(name="library", file_ids=[coolant, kitchen])
    _wait_store(client, store.id)
    return Library(client, store.id, coolant, kitchen)


@pytest.fixture(scope="module")
def library(stack: Stack) -> Library:
    return _library(stack.client())


def _assistant(lib: Library, tool: Any = None) -> Any:
    tools: Any = [tool or {"type": "file_search"}]
    return lib.client.beta.assistants.create(
        model="gpt-4o",
        instructions="Answer from the files.",
        tools=tools,
        tool_resources={"file_search": {"vector_store_ids": [lib.store_id]}},
    )


def _thread(client: openai.OpenAI) -> Any:
    return client.beta.threads.create(
        messages=[{"role": "user", "content": "How is the Zorblax reactor cooled?"}]
    )


def _steps(client: openai.OpenAI, thread_id: str, run_id: str, **kw: Any) -> list[Any]:
    return client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc", **kw).data


def test_overview_flow_cites_the_right_file(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = _assistant(library)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error

    # The model was offered the function and read the chunks behind their markers.
    offered = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert offered == ["file_search"]
    tool_turn = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert "【0:0†source】 reactor.txt" in tool_turn["content"]
    assert "liquid sodium" in tool_turn["content"]

    steps = _steps(client, thread.id, run.id)
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    (call,) = steps[0].step_details.tool_calls
    assert call.type == "file_search"
    assert call.file_search.ranking_options.ranker == "default_2024_08_21"
    assert call.file_search.ranking_options.score_threshold == 0.0
    results = call.file_search.results
    assert results[0].file_id == library.coolant_id and results[0].file_name == "reactor.txt"
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert all(r.content is None for r in results)  # not asked for

    # The annotation points at the reactor file and spans the marker in code points.
    (message,) = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.value == ANSWER
    (annotation,) = text.annotations
    assert annotation.type == "file_citation"
    assert annotation.text == "【0:0†source】"
    assert text.value[annotation.start_index : annotation.end_index] == annotation.text
    assert annotation.file_citation.file_id == library.coolant_id  # type: ignore[union-attr]

    # The seeds' annotation-rendering snippet, unchanged.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _overview_snippet(client, thread.id, message.id)
    assert out.getvalue().startswith("The Zorblax reactor is cooled by liquid sodium [0].")
    assert "[0] The Zorblax reactor is cooled by liquid sodium" in out.getvalue()
    assert "from reactor.txt" in out.getvalue()


def _overview_snippet(client: openai.OpenAI, thread_id: str, message_id: str) -> None:
    # Retrieve the message object
    message = client.beta.threads.messages.retrieve(thread_id=thread_id, message_id=message_id)
    # Extract the message content
    message_content = message.content[0].text  # type: ignore[union-attr]
    annotations = message_content.annotations
    citations = []
    # Iterate over the annotations and add footnotes
    for index, annotation in enumerate(annotations):
        # Replace the text with a footnote
        message_content.value = message_content.value.replace(annotation.text, f" [{index}]")
        # Gather citations based on annotation attributes
        if file_citation := getattr(annotation, "file_citation", None):
            cited_file = client.files.retrieve(file_citation.file_id)
            citations.append(f"[{index}] {file_citation.quote} from {cited_file.filename}")
        elif file_path := getattr(annotation, "file_path", None):
            cited_file = client.files.retrieve(file_path.file_id)
            citations.append(f"[{index}] Click <here> to download {cited_file.filename}")
            # Note: File download functionality not implemented above for brevity
    # Add footnotes to the end of the message before displaying to user
    message_content.value += "\n" + "\n".join(citations)
    print(message_content.value)


def test_include_content_only_when_requested(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = _assistant(library)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, include=[INCLUDE]
    )
    assert run.status == "completed", run.last_error
    plain = _steps(client, thread.id, run.id)[0].step_details.tool_calls[0]
    assert all(r.content is None for r in plain.file_search.results)
    listed = _steps(client, thread.id, run.id, include=[INCLUDE])[0]
    got = client.beta.threads.runs.steps.retrieve(
        listed.id, thread_id=thread.id, run_id=run.id, include=[INCLUDE]
    )
    for step in (listed, got):
        details: Any = step.step_details
        first = details.tool_calls[0].file_search.results[0]
        assert first.content is not None
        assert first.content[0].type == "text" and "liquid sodium" in first.content[0].text
    # An unknown include value is a 400 in OpenAI's shape, never a 500.
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, include=["nope"])  # type: ignore[list-item]
    assert error.value.body["param"] == "include"  # type: ignore[index]


def test_a_stream_carries_content_only_when_requested(
    library: Library, model: ScriptedModel
) -> None:
    client = library.client
    assistant = _assistant(library)
    seen = []
    for include in ([], [INCLUDE]):
        thread = _thread(client)
        model.reset()
        model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
        stream = client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, stream=True, include=include
        )
        steps = [
            e.data
            for e in stream
            if e.event == "thread.run.step.completed" and e.data.type == "tool_calls"
        ]
        (step,) = steps
        details: Any = step.step_details
        seen.append(details.tool_calls[0].file_search.results[0].content)
    assert seen[0] is None
    assert seen[1] is not None and "liquid sodium" in seen[1][0].text


def test_score_threshold_and_max_results(library: Library, model: ScriptedModel) -> None:
    client = library.client
    thread = _thread(client)
    loose = _assistant(library)
    strict = _assistant(
        library,
        {
            "type": "file_search",
            "file_search": {
                "max_num_results": 5,
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.99},
            },
        },
    )
    scores = []
    for assistant in (loose, strict):
        model.reset()
        model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text="Sodium."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "completed", run.last_error
        call = _steps(client, thread.id, run.id)[0].step_details.tool_calls[0]
        scores.append([r.score for r in call.file_search.results])
        threshold = call.file_search.ranking_options.score_threshold
    assert threshold == 0.99
    assert len(scores[0]) == 2  # both files, the reactor first
    assert len(scores[1]) < len(scores[0])
    assert all(s >= 0.99 for s in scores[1])


def test_forced_tool_choice_searches(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = _assistant(library)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "file_search"}
    )
    assert run.status == "completed", run.last_error
    assert model.requests[0]["tool_choice"] == {
        "type": "function",
        "function": {"name": "file_search"},
    }
    assert _steps(client, thread.id, run.id)[0].step_details.tool_calls[0].type == "file_search"


class _Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.done: list[Any] = []
        self.completed_steps: list[Any] = []
        self.annotations: list[Any] = []
        self.deltas: list[str] = []

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.created.append(tool_call.type)

    def on_tool_call_done(self, tool_call: Any) -> None:
        self.done.append(tool_call)

    def on_run_step_done(self, run_step: Any) -> None:
        if run_step.type == "tool_calls":
            self.completed_steps.append(run_step)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.deltas.append(delta.value or "")
        for annotation in delta.annotations or []:
            self.annotations.append(annotation)
            # A marker and its annotation arrive in the same delta.
            assert annotation.text in (delta.value or "")


def test_streamed_run_with_citations(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = _assistant(library)
    thread = _thread(client)
    answer = (
        "Sodium cools it【0:0†source】, in three loops【0:0†source】; "
        "the outlet is 550 °C【0:0†source】【9:9†source】."
    )
    model.reset()
    model.enqueue(
        Reply(tool_calls=[SEARCH]),
        # Small chunks, slowly: delta batches would end inside markers if they were not held.
        Reply(text=answer, chunk_chars=3, tokens_per_second=150),
    )
    handler = _Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
        final = stream.get_final_messages()
        run = stream.get_final_run()
    assert run.status == "completed", run.last_error
    assert handler.created == ["file_search"]
    # (the SDK reports the current call done at step.completed and again at run.completed)
    assert handler.done and {d.type for d in handler.done} == {"file_search"}
    (step,) = handler.completed_steps
    (done,) = step.step_details.tool_calls
    assert done.type == "file_search" and done.file_search.results[0].file_id == library.coolant_id
    assert done.file_search.results[0].content is None
    assert len(handler.deltas) > 3
    stored = client.beta.threads.messages.retrieve(final[0].id, thread_id=thread.id)
    assert final[0].content == stored.content
    text = stored.content[0].text  # type: ignore[union-attr]
    assert len(text.annotations) == 3  # 【9:9†source】 names no result: plain text
    assert len(handler.annotations) == 3  # each streamed exactly once
    for annotation in text.annotations:
        assert text.value[annotation.start_index : annotation.end_index] == "【0:0†source】"


def test_attachments_build_the_thread_store(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    search_tools: Any = [{"type": "file_search"}]
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "When is the espresso machine descaled?",
                "attachments": [{"file_id": library.kitchen_id, "tools": search_tools}],
            }
        ]
    )
    resources = client.beta.threads.retrieve(thread.id).tool_resources
    assert resources is not None and resources.file_search is not None
    (store_id,) = resources.file_search.vector_store_ids or []
    store = client.vector_stores.retrieve(store_id)
    assert store.expires_after is not None
    assert (store.expires_after.anchor, store.expires_after.days) == ("last_active_at", 7)
    # A second message's attachment joins the same store.
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="And the reactor?",
        attachments=[{"file_id": library.coolant_id, "tools": search_tools}],
    )
    resources = client.beta.threads.retrieve(thread.id).tool_resources
    assert resources is not None and resources.file_search is not None
    assert resources.file_search.vector_store_ids == [store_id]
    search = ToolCallSpec("file_search", json.dumps({"queries": ["espresso machine descaled"]}))
    model.reset()
    model.enqueue(Reply(tool_calls=[search]), Reply(text="Monthly【0:0†source】."))
    # The run starts at once: it waits for the thread store's files before calling the model.
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert client.vector_stores.retrieve(store_id).file_counts.completed == 2
    tool_turn = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert "descaled monthly" in tool_turn["content"]
    (message,) = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    (annotation,) = message.content[0].text.annotations  # type: ignore[union-attr]
    assert annotation.file_citation.file_id == library.kitchen_id  # type: ignore[union-attr]


def test_an_expired_thread_store_fails_the_run(
    stack: Stack, library: Library, model: ScriptedModel
) -> None:
    client = library.client
    store = client.vector_stores.create(name="short-lived")
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Hi"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    DirectDB(stack.database_url).write(
        lambda conn: conn.execute(
            update(vector_stores).where(vector_stores.c.id == store.id).values(expired=True)
        )
    )
    model.reset()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert store.id in run.last_error.message and "expired" in run.last_error.message
    assert model.requests == []  # the model was never called


def test_a_backend_without_tools_fails_clearly(library: Library, model: ScriptedModel) -> None:
    client = library.client
    assistant = _assistant(library)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(status=400, error_message="this model does not support tools"))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert run.last_error is not None
    assert run.last_error.message.startswith("file_search needs a model that can call functions")
    assert "does not support tools" in run.last_error.message


def test_project_isolation(stack: Stack, library: Library, model: ScriptedModel) -> None:
    other_key = stack.cli("keys", "create", "--project", f"fs-{uuid.uuid4().hex[:6]}")
    other = stack.client(api_key=other_key.splitlines()[0].strip())
    secret = "The Quuxbridge vault code is 7431 and the Zorblax reactor coolant is plutonium."
    theirs = other.vector_stores.create(
        name="theirs", file_ids=[_upload(other, "secret.txt", secret)]
    )
    _wait_one(other, theirs.id)
    client = library.client
    # The API refuses another project's store outright.
    with pytest.raises(openai.BadRequestError, match="no vector store found"):
        client.beta.assistants.create(
            model="gpt-4o",
            tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [theirs.id]}},
        )
    # Forced into an assistant's row behind the API's back, the run still cannot search it.
    # (One id, as the spec allows: the stack is shared, and every later reader of this project's
    # assistants, the fuzz test's spec validation among them, sees this row.)
    assistant = _assistant(library)
    DirectDB(stack.database_url).write(lambda conn: _force_store(conn, assistant.id, [theirs.id]))
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert run.last_error is not None and theirs.id in run.last_error.message
    sent = json.dumps(model.requests)
    assert "Quuxbridge" not in sent and "plutonium" not in sent
    client.beta.assistants.delete(assistant.id)


def _wait_one(client: openai.OpenAI, store_id: str) -> None:
    deadline = time.monotonic() + 90
    while client.vector_stores.retrieve(store_id).file_counts.completed < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _force_store(conn: Connection, assistant_id: str, store_ids: list[str]) -> None:
    conn.execute(
        update(assistants_table)
        .where(assistants_table.c.id == assistant_id)
        .values(tool_resources={"file_search": {"vector_store_ids": store_ids}})
    )


# --- crashes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite"])
def crash_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="fs-crash",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        # Embeddings from the scripted endpoint, so a test can make the query's embedding slow.
        overrides={
            "ASSISTANTS_EMBEDDINGS_BASE_URL": model.base_url,
            "ASSISTANTS_EMBEDDINGS_MODEL": "scripted-embedding",
            "ASSISTANTS_EMBEDDINGS_DIMENSIONS": "64",
        },
    ) as stack:
        yield stack


def _one_step_one_message(client: openai.OpenAI, thread_id: str, run_id: str, lib: Library) -> None:
    steps = _steps(client, thread_id, run_id)
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert len(steps[0].step_details.tool_calls) == 1
    messages = client.beta.threads.messages.list(thread_id=thread_id).data
    assert [m.role for m in messages] == ["assistant", "user"]
    text = messages[0].content[0].text  # type: ignore[union-attr]
    assert text.value == ANSWER
    (annotation,) = text.annotations
    assert annotation.file_citation.file_id == lib.coolant_id  # type: ignore[union-attr]
    assert text.value[annotation.start_index : annotation.end_index] == "【0:0†source】"


def test_worker_killed_during_the_next_model_call(crash_stack: Stack, model: ScriptedModel) -> None:
    client = crash_stack.client()
    lib = _library(client)
    assistant = _assistant(lib)
    thread = _thread(client)
    model.reset()
    model.enqueue(
        Reply(tool_calls=[SEARCH]),
        Reply(text=ANSWER, chunk_chars=2, tokens_per_second=10),  # about 4 s of streaming
        Reply(text=ANSWER),
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 30
    while len(_steps(client, thread.id, run.id)) < 2:  # the answer is streaming
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    crash_stack.kill_workers()
    crash_stack.start_worker()
    final = wait_for_status(client, thread.id, run.id, {"completed", "failed", "expired"}, 60)
    assert final.status == "completed", final.last_error
    _one_step_one_message(client, thread.id, run.id, lib)


def test_worker_killed_during_the_search(crash_stack: Stack, model: ScriptedModel) -> None:
    client = crash_stack.client()
    lib = _library(client)
    assistant = _assistant(lib)
    thread = _thread(client)
    model.reset()
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=ANSWER))
    model.enqueue_embeddings(EmbeddingReply(delay=6.0))  # the query's embedding hangs
    embedded = len(model.embedding_requests)
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 30
    while len(model.embedding_requests) == embedded:  # the search activity is embedding
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert _steps(client, thread.id, run.id)[0].status == "in_progress"
    crash_stack.kill_workers()
    crash_stack.start_worker()
    final = wait_for_status(client, thread.id, run.id, {"completed", "failed", "expired"}, 60)
    assert final.status == "completed", final.last_error
    _one_step_one_message(client, thread.id, run.id, lib)

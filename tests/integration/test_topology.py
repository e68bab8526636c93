"""The production topology as processes on this machine, and what a crash of its parts loses:
nothing.

Every part a deployment runs is its own process: a Temporal dev server of this module's own, a
PostgreSQL cluster, an S3-speaking object store (moto's server), two `durable-assistants api`
replicas and two model-only `durable-assistants worker`s (`ASSISTANTS_SANDBOX_WORKER=false`) on
one database, Temporal and task queue, and a `durable-assistants sandbox-worker` that runs the
code_interpreter sandboxes. The tests hold one `openai` SDK client per replica.

The core flows cross the replicas on purpose, since the replicas share nothing but the database,
Temporal and the object store: a run created through one is polled through the other, a stream
read through one is checked through the other, tool outputs go to the replica that did not start
the run, a file uploaded to S3 through one is downloaded, indexed and searched through the
other, and code runs on the sandbox host. Then two dozen runs are in flight, polled and streamed
through both replicas, while one replica and one worker are SIGKILLed. Clients of the dead
replica fail over to the other (as a load balancer would send them; streams resume with
`Last-Event-ID`), nothing is restarted, and every run completes exactly once: one step, one
assistant message with the whole answer, an event log without gaps or duplicates, and streams
that saw each event once.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from assistants.devserver import TemporalDevServer, free_port
from assistants.store.tables import messages, run_events, run_steps, runs
from assistants.testing.postgres import PostgresCluster
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.integration.test_code_interpreter import _jailed_children
from tests.support.messages import text_of
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server
from tests.support.stack import Stack
from tests.support.vector_stores import DbProbe

pytestmark = pytest.mark.slow

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete", "requires_action"}
LOOKUP: Any = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
COOLANT = (
    "The Zorblax reactor is cooled by liquid sodium pumped through three independent loops. "
    "Coolant temperature at the core outlet is 550 degrees Celsius."
)
KITCHEN = (
    "The staff kitchen on the second floor opens at eight. Coffee beans are delivered every "
    "Tuesday, and the espresso machine is descaled monthly."
)
SEARCH = ToolCallSpec("file_search", json.dumps({"queries": ["Zorblax reactor coolant"]}))
CITED = "The Zorblax reactor is cooled by liquid sodium【0:0†source】."
STREAMED = "Streamed through one replica, read back through the other."
SALES = b"month,revenue\njan,10\nfeb,20\nmar,15\n"
SUM_CODE = (
    "rows = open('/mnt/data/sales.csv').read().split()[1:]\nsum(int(r.split(',')[1]) for r in rows)"
)


@dataclass
class Topology:
    stack: Stack
    replica_port: int  # the second API process; the first is on stack.api_port
    model_workers: list[subprocess.Popen[bytes]]
    sandbox_host: subprocess.Popen[bytes]
    s3: S3Server
    bucket: str
    probe: DbProbe

    def clients(self) -> tuple[openai.OpenAI, openai.OpenAI]:
        return self.stack.client(), self.stack.client(port=self.replica_port)

    def http(self, port: int) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{port}/v1",
            headers={
                "Authorization": f"Bearer {self.stack.api_key}",
                "OpenAI-Beta": "assistants=v2",
            },
            timeout=30,
        )


def _model_workers(stack: Stack) -> list[subprocess.Popen[bytes]]:
    return [stack.start_worker(), stack.start_worker()]


@pytest.fixture(scope="module")
def topology(
    own_temporal: TemporalDevServer,
    postgres: PostgresCluster,
    s3_server: S3Server,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Topology]:
    bucket = f"topology-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    stack = Stack(
        name="topology",
        database_url=postgres.create_database("topology"),
        temporal_address=own_temporal.address,
        model_base_url=model.base_url,
        workdir=tmp_path_factory.mktemp("topology"),
        overrides={
            "ASSISTANTS_FILES_BACKEND": "s3",
            "ASSISTANTS_FILES_S3_BUCKET": bucket,
            "ASSISTANTS_FILES_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "ASSISTANTS_FILES_S3_REGION": REGION,
            "ASSISTANTS_FILES_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "ASSISTANTS_FILES_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "ASSISTANTS_SANDBOX_WORKER": "false",
            # As deployed: workflow code outside the sandbox (the other tests keep it inside).
            "ASSISTANTS_WORKFLOW_SANDBOX": "false",
        },
    )
    replica_port = free_port()
    try:
        stack.start_api()  # alone first: it applies the schema migrations
        with ThreadPoolExecutor(3) as pool:  # the other processes start side by side
            replica = pool.submit(stack.start_api, port=replica_port)
            workers = pool.submit(_model_workers, stack)
            host = pool.submit(stack.start_sandbox_worker)
            replica.result()
            topology = Topology(
                stack=stack,
                replica_port=replica_port,
                model_workers=workers.result(),
                sandbox_host=host.result(),
                s3=s3_server,
                bucket=bucket,
                probe=DbProbe(stack.database_url),
            )
        try:
            yield topology
        finally:
            topology.probe.close()
    finally:
        stack.stop()


# --- the core flows, across both replicas ------------------------------------------------------


def test_core_flows_cross_both_replicas(topology: Topology, model: ScriptedModel) -> None:
    one, two = topology.clients()

    # An assistant made on one replica, a thread on the other, polled on the first.
    assistant = one.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
    thread = two.beta.threads.create()
    two.beta.threads.messages.create(thread.id, role="user", content="Hello?")
    model.enqueue(Reply(text="Hello from the other replica."))
    run = one.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert two.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
    listed = two.beta.threads.messages.list(thread_id=thread.id).data
    assert [(m.role, text_of(m)) for m in listed] == [
        ("assistant", "Hello from the other replica."),
        ("user", "Hello?"),
    ]

    # Streamed through the second replica, the run then read through the first.
    thread = one.beta.threads.create(messages=[{"role": "user", "content": "Stream it."}])
    model.enqueue(Reply(text=STREAMED, chunk_chars=5))
    deltas: list[str] = []
    names: list[str] = []
    with two.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            names.append(event.event)
            if event.event == "thread.message.delta":
                deltas.extend(
                    part.text.value or ""
                    for part in event.data.delta.content or []
                    if part.type == "text" and part.text is not None
                )
        streamed_run = stream.get_final_run()
    assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed"
    assert "".join(deltas) == STREAMED
    seen = one.beta.threads.runs.retrieve(streamed_run.id, thread_id=thread.id)
    assert seen.status == "completed" and seen.completed_at is not None
    assert text_of(one.beta.threads.messages.list(thread_id=thread.id).data[0]) == STREAMED

    # A client function: the run started on one replica, its outputs submitted to the other.
    helper = one.beta.assistants.create(model="gpt-4o", tools=[LOOKUP])
    thread = two.beta.threads.create(messages=[{"role": "user", "content": "Look it up"}])
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", "{}")]), Reply(text="It is 42."))
    waiting = one.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id)
    assert waiting.status == "requires_action" and waiting.required_action is not None
    (call,) = waiting.required_action.submit_tool_outputs.tool_calls
    done = two.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=waiting.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "42"}],
    )
    assert done.status == "completed", done.last_error
    tool_turns = [m for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert [(t["tool_call_id"], t["content"]) for t in tool_turns] == [(call.id, "42")]
    assert text_of(one.beta.threads.messages.list(thread_id=thread.id).data[0]) == "It is 42."

    # A file uploaded to S3 through one replica, downloaded and indexed through the other, then
    # searched by a run (the worker reads the bytes from S3 to index them).
    reactor = one.files.create(file=("reactor.txt", COOLANT.encode()), purpose="assistants")
    assert any(key.endswith(reactor.id) for key in topology.s3.object_keys(topology.bucket))
    assert two.files.content(reactor.id).content == COOLANT.encode()
    store = two.vector_stores.create(name="library")
    indexed = two.vector_stores.files.create_and_poll(file_id=reactor.id, vector_store_id=store.id)
    assert indexed.status == "completed", indexed.last_error
    kitchen = one.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("kitchen.txt", KITCHEN.encode())
    )
    assert kitchen.status == "completed", kitchen.last_error
    assert one.vector_stores.retrieve(store.id).file_counts.completed == 2
    searcher = two.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = one.beta.threads.create(messages=[{"role": "user", "content": "How is it cooled?"}])
    model.enqueue(Reply(tool_calls=[SEARCH]), Reply(text=CITED))
    run = two.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=searcher.id)
    assert run.status == "completed", run.last_error
    steps = one.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.type == "tool_calls"
    (search,) = steps[0].step_details.tool_calls
    assert search.type == "file_search" and search.file_search.results
    assert search.file_search.results[0].file_id == reactor.id
    (answer,) = one.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    assert answer.content[0].type == "text"
    assert answer.content[0].text.value == CITED
    (annotation,) = answer.content[0].text.annotations
    assert annotation.type == "file_citation"
    assert annotation.file_citation.file_id == reactor.id

    # code_interpreter: the code runs in a sandbox of the sandbox host (not of a model worker),
    # on a file it fetched from S3.
    sales = two.files.create(file=("sales.csv", SALES), purpose="assistants")
    coder = one.beta.assistants.create(
        model="gpt-4o",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [sales.id]}},
    )
    thread = two.beta.threads.create(messages=[{"role": "user", "content": "Total revenue?"}])
    code_call = ToolCallSpec("python", json.dumps({"code": SUM_CODE}))
    model.enqueue(Reply(tool_calls=[code_call]), Reply(text="Revenue totals 45."))
    run = two.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=coder.id)
    assert run.status == "completed", run.last_error
    steps = one.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert steps[0].step_details.type == "tool_calls"
    (code,) = steps[0].step_details.tool_calls
    assert code.type == "code_interpreter"
    assert [(o.type, getattr(o, "logs", None)) for o in code.code_interpreter.outputs] == [
        ("logs", "45")
    ]
    assert _jailed_children(topology.sandbox_host.pid)
    assert not any(_jailed_children(worker.pid) for worker in topology.model_workers)
    assert text_of(one.beta.threads.messages.list(thread_id=thread.id).data[0]) == (
        "Revenue totals 45."
    )


# --- SIGKILL of a replica and a worker under load ----------------------------------------------

RUNS = 24
QUESTION = re.compile(r"Question (\d+)\.")


def _answer(i: int) -> str:
    return f"Answer {i}: penguins huddle together to share warmth through the long polar night."


def _respond(body: dict[str, Any]) -> Reply:
    """Each run's answer follows from its question, so a call retried on another worker gets the
    same text (about three and a half seconds of streaming)."""
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    found = QUESTION.search(json.dumps(user["content"]))
    assert found is not None, user
    return Reply(text=_answer(int(found.group(1))), tokens_per_second=6)


@dataclass
class Flight:
    """One run of the load, as its client saw it."""

    index: int
    thread_id: str
    run_id: str = ""
    status: str = ""
    failed_over: bool = False
    frames: list[dict[str, str]] = field(default_factory=list)  # streamed runs only


def _frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """SSE frames as they complete (a frame cut by a dropped connection is not yielded)."""
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                yield current
                current = {}
            continue
        name, _, value = line.partition(": ")
        current[name] = value


class Load:
    """The load's clients: one SDK client per replica, shared by the runs' threads."""

    def __init__(self, topology: Topology, assistant_id: str) -> None:
        self.topology = topology
        self.assistant_id = assistant_id
        self.clients = topology.clients()
        self.ports = (topology.stack.api_port, topology.replica_port)
        self.started = threading.Semaphore(0)

    def fly(self, i: int) -> Flight:
        """Run i: created on replica i % 2, polled (i % 4 < 2) or streamed, failing over to the
        other replica when a request to its own cannot connect or is cut."""
        own = i % 2
        client = self.clients[own]
        thread = client.beta.threads.create(
            messages=[{"role": "user", "content": f"Question {i}."}]
        )
        flight = Flight(i, thread.id)
        if i % 4 < 2:
            run = client.beta.threads.runs.create(
                thread_id=thread.id, assistant_id=self.assistant_id
            )
            flight.run_id = run.id
            self.started.release()
            self._poll(flight, own)
        else:
            self._stream(flight, own)
        return flight

    def _poll(self, flight: Flight, own: int) -> None:
        replica = own
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                run = self.clients[replica].beta.threads.runs.retrieve(
                    flight.run_id, thread_id=flight.thread_id
                )
            except openai.APIConnectionError:
                assert not flight.failed_over, "the surviving replica failed too"
                replica, flight.failed_over = 1 - own, True
                continue
            if run.status in TERMINAL:
                flight.status = run.status
                return
            time.sleep(0.25)
        raise TimeoutError(f"run {flight.run_id} did not end")

    def _stream(self, flight: Flight, own: int) -> None:
        body = {"assistant_id": self.assistant_id, "stream": True}
        try:
            with (
                self.topology.http(self.ports[own]) as http,
                http.stream("POST", f"/threads/{flight.thread_id}/runs", json=body) as response,
            ):
                assert response.status_code == 200, response.read()
                for frame in _frames(response):
                    flight.frames.append(frame)
                    if frame["event"] == "thread.run.created":
                        flight.run_id = json.loads(frame["data"])["id"]
                        self.started.release()
        except httpx.TransportError:
            # The replica died mid-stream (the run already existed: the kill waits for every
            # run to start). The rest of the stream, from the other replica: nothing lost,
            # nothing repeated.
            assert flight.run_id, "the stream broke before the run was created"
            flight.failed_over = True
            resume = {"Last-Event-ID": flight.frames[-1]["id"]}
            path = f"/threads/{flight.thread_id}/runs/{flight.run_id}/events"
            with (
                self.topology.http(self.ports[1 - own]) as http,
                http.stream("GET", path, headers=resume) as response,
            ):
                assert response.status_code == 200, response.read()
                flight.frames.extend(_frames(response))
        assert flight.frames[-1] == {"event": "done", "data": "[DONE]"}
        flight.status = json.loads(flight.frames[-2]["data"])["status"]


def _delta_text(data: list[str]) -> str:
    text = []
    for raw in data:
        for part in json.loads(raw)["delta"].get("content") or []:
            if part["type"] == "text":
                text.append(part["text"].get("value") or "")
    return "".join(text)


def test_sigkill_of_a_replica_and_a_worker_under_load_loses_nothing(
    topology: Topology, model: ScriptedModel
) -> None:
    stack = topology.stack
    one, two = topology.clients()
    assistant = one.beta.assistants.create(model="gpt-4o", instructions="Answer.")
    model.set_responder(_respond)
    load = Load(topology, assistant.id)
    killed_api = stack.api
    assert killed_api is not None
    [killed_worker, survivor] = topology.model_workers
    with ThreadPoolExecutor(RUNS) as pool:
        flights = [pool.submit(load.fly, i) for i in range(RUNS)]
        for _ in range(RUNS):  # every run exists...
            if not load.started.acquire(timeout=60):
                [f.result() for f in flights if f.done()]  # raises what stopped a run, if any
                pytest.fail("the runs did not start")
        model.wait_for_requests(RUNS, timeout=60)  # ...and every one is talking to the model
        time.sleep(0.5)
        assert model.in_flight > RUNS // 3  # mid-flight
        stack.kill(killed_api)
        stack.kill(killed_worker)
        results = [f.result(timeout=150) for f in flights]
    topology.model_workers.remove(killed_worker)
    assert survivor.poll() is None and topology.sandbox_host.poll() is None

    # The kills hit work in flight: clients of the dead replica failed over, calls of the dead
    # worker were made again on the other one.
    assert sum(f.failed_over for f in results) >= RUNS // 4
    assert not any(f.failed_over for f in results if f.index % 2)  # the survivor's own
    assert len(model.requests) > RUNS
    with pytest.raises(openai.APIConnectionError):
        one.models.list()

    for flight in results:
        assert flight.status == "completed", flight
        answer = _answer(flight.index)
        # Through the API (the surviving replica)...
        run = two.beta.threads.runs.retrieve(flight.run_id, thread_id=flight.thread_id)
        assert run.status == "completed", run.last_error
        listed = two.beta.threads.messages.list(thread_id=flight.thread_id).data
        assert [(m.role, text_of(m)) for m in listed] == [
            ("assistant", answer),
            ("user", f"Question {flight.index}."),
        ]
        steps = two.beta.threads.runs.steps.list(flight.run_id, thread_id=flight.thread_id).data
        assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
        # ...and in the database behind it.
        log = _event_log(topology.probe, flight.run_id)
        seqs = [seq for seq, _, _ in log]
        assert seqs == list(range(1, len(log) + 1))  # contiguous, no duplicates
        assert seqs[-1] == _event_seq(topology.probe, flight.run_id)
        names = [event for _, event, _ in log]
        assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed"
        for once in ("thread.run.created", "thread.message.completed", "thread.run.completed"):
            assert names.count(once) == 1, (once, names)
        deltas = [data for _, event, data in log if event == "thread.message.delta"]
        assert _delta_text(deltas) == answer
        assert _rows(topology.probe, flight.thread_id, flight.run_id) == (2, 1)
        if flight.frames:  # a streamed run saw the log exactly, across the failover if any
            assert [f["id"] for f in flight.frames[:-1]] == [str(s) for s in seqs]
            assert [f["event"] for f in flight.frames[:-1]] == names


def _event_log(probe: DbProbe, run_id: str) -> list[tuple[int, str, str]]:
    c = run_events.c
    query = select(c.seq, c.event, c.data).where(c.run_id == run_id).order_by(c.seq)
    return probe.read(lambda conn: [(int(r.seq), r.event, r.data) for r in conn.execute(query)])


def _event_seq(probe: DbProbe, run_id: str) -> int:
    query = select(runs.c.event_seq).where(runs.c.id == run_id)
    return probe.read(lambda conn: int(conn.scalar(query) or 0))


def _rows(probe: DbProbe, thread_id: str, run_id: str) -> tuple[int, int]:
    """Message rows of the thread and step rows of the run."""
    in_thread = select(messages.c.id).where(messages.c.thread_id == thread_id)
    of_run = select(run_steps.c.id).where(run_steps.c.run_id == run_id)
    return probe.read(
        lambda conn: (len(conn.scalars(in_thread).all()), len(conn.scalars(of_run).all()))
    )

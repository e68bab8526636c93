"""Projects are isolated: with another project's key, this project's objects do not exist.

Project A is the stack's bootstrap key (project "default"); project B gets a key from
`durable-assistants keys create --project other`. Every read, modify, delete, list, cancel and run
creation B aims at A's assistant, thread, message, run or step answers exactly what it answers for
an id that exists nowhere (same status, same body, only the id differs), B's lists never show A's
objects, and nothing of A's changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from assistants.ids import new_id
from assistants.testing.scripted_model import ScriptedModel
from tests.integration.test_bad_input import RowCounts
from tests.support.contract import validate
from tests.support.stack import Stack

Ids = dict[str, str]


@dataclass
class Projects:
    stack: Stack
    a: openai.OpenAI
    b: openai.OpenAI
    b_key: str
    a_ids: Ids  # asst, thread, msg, run, step
    b_ids: Ids  # b_asst, b_thread, b_msg
    random_ids: Ids  # same keys as a_ids, ids that exist nowhere
    a_before: dict[str, Any]
    rows: RowCounts

    def a_view(self) -> dict[str, Any]:
        """Everything of A's, as A sees it."""
        ids = self.a_ids
        with self.stack.http() as http:

            def get(path: str, **params: Any) -> Any:
                response = http.get(path, params=params)
                assert response.status_code == 200, response.text
                return response.json()

            thread = f"/threads/{ids['thread']}"
            run = f"{thread}/runs/{ids['run']}"
            return {
                "assistant": get(f"/assistants/{ids['asst']}"),
                "assistants": get("/assistants", limit=100),
                "thread": get(thread),
                "message": get(f"{thread}/messages/{ids['msg']}"),
                "messages": get(f"{thread}/messages", limit=100),
                "run": get(run),
                "runs": get(f"{thread}/runs", limit=100),
                "step": get(f"{run}/steps/{ids['step']}"),
                "steps": get(f"{run}/steps", limit=100),
            }

    def b_view(self) -> dict[str, Any]:
        with self.stack.http(self.b_key) as http:
            thread = f"/threads/{self.b_ids['b_thread']}"
            return {
                "assistants": http.get("/assistants", params={"limit": 100}).json(),
                "thread": http.get(thread).json(),
                "messages": http.get(f"{thread}/messages", params={"limit": 100}).json(),
                "runs": http.get(f"{thread}/runs", params={"limit": 100}).json(),
            }

    def state(self) -> dict[str, Any]:
        return {"a": self.a_view(), "b": self.b_view(), "rows": self.rows()}


@pytest.fixture(scope="module")
def projects(stack: Stack, model: ScriptedModel) -> Iterator[Projects]:
    model.reset()  # our run gets the default reply, whatever another module left queued
    b_key = stack.cli("keys", "create", "--project", "other").splitlines()[0].strip()
    assert b_key and b_key != stack.api_key
    a, b = stack.client(), stack.client(api_key=b_key)

    assistant = a.beta.assistants.create(
        model="gpt-4o",
        name="A's assistant",
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        metadata={"owner": "A"},
    )
    thread = a.beta.threads.create(metadata={"owner": "A"})
    message = a.beta.threads.messages.create(thread.id, role="user", content="A's secret")
    run = a.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    step = a.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]

    b_assistant = b.beta.assistants.create(model="gpt-4o", name="B's assistant")
    b_thread = b.beta.threads.create(metadata={"owner": "B"})
    b_message = b.beta.threads.messages.create(b_thread.id, role="user", content="B's own")

    rows = RowCounts(stack.database_url)
    found = Projects(
        stack=stack,
        a=a,
        b=b,
        b_key=b_key,
        a_ids={
            "asst": assistant.id,
            "thread": thread.id,
            "msg": message.id,
            "run": run.id,
            "step": step.id,
        },
        b_ids={"b_asst": b_assistant.id, "b_thread": b_thread.id, "b_msg": b_message.id},
        random_ids={
            "asst": new_id("asst"),
            "thread": new_id("thread"),
            "msg": new_id("msg"),
            "run": new_id("run"),
            "step": new_id("step"),
        },
        a_before={},
        rows=rows,
    )
    found.a_before = found.a_view()
    try:
        yield found
    finally:
        rows.close()


def _as_a(text: str, projects: Projects) -> str:
    """A body about the random ids, rewritten to be about A's ids."""
    for kind, random_id in projects.random_ids.items():
        text = text.replace(random_id, projects.a_ids[kind])
    return text


# --- B, through the SDK, on A's objects ---------------------------------------------------------

Call = Callable[[openai.OpenAI, Ids], object]

SDK_CALLS: dict[str, Call] = {
    "assistants.retrieve": lambda c, i: c.beta.assistants.retrieve(i["asst"]),
    "assistants.update": lambda c, i: c.beta.assistants.update(i["asst"], name="B was here"),
    "assistants.delete": lambda c, i: c.beta.assistants.delete(i["asst"]),
    "threads.retrieve": lambda c, i: c.beta.threads.retrieve(i["thread"]),
    "threads.update": lambda c, i: c.beta.threads.update(i["thread"], metadata={"owner": "B"}),
    "threads.delete": lambda c, i: c.beta.threads.delete(i["thread"]),
    "messages.list": lambda c, i: c.beta.threads.messages.list(i["thread"]),
    "messages.create": lambda c, i: c.beta.threads.messages.create(
        i["thread"], role="user", content="B's intrusion"
    ),
    "messages.retrieve": lambda c, i: c.beta.threads.messages.retrieve(
        i["msg"], thread_id=i["thread"]
    ),
    "messages.update": lambda c, i: c.beta.threads.messages.update(
        i["msg"], thread_id=i["thread"], metadata={"owner": "B"}
    ),
    "messages.delete": lambda c, i: c.beta.threads.messages.delete(i["msg"], thread_id=i["thread"]),
    "messages.retrieve-via-B-thread": lambda c, i: c.beta.threads.messages.retrieve(
        i["msg"], thread_id=i["b_thread"]
    ),
    "messages.update-via-B-thread": lambda c, i: c.beta.threads.messages.update(
        i["msg"], thread_id=i["b_thread"], metadata={"owner": "B"}
    ),
    "messages.delete-via-B-thread": lambda c, i: c.beta.threads.messages.delete(
        i["msg"], thread_id=i["b_thread"]
    ),
    "runs.list": lambda c, i: c.beta.threads.runs.list(i["thread"]),
    "runs.create-A-assistant-on-A-thread": lambda c, i: c.beta.threads.runs.create(
        i["thread"], assistant_id=i["asst"]
    ),
    "runs.create-B-assistant-on-A-thread": lambda c, i: c.beta.threads.runs.create(
        i["thread"], assistant_id=i["b_asst"]
    ),
    "runs.create-A-assistant-on-B-thread": lambda c, i: c.beta.threads.runs.create(
        i["b_thread"], assistant_id=i["asst"]
    ),
    "threads.create_and_run-A-assistant": lambda c, i: c.beta.threads.create_and_run(
        assistant_id=i["asst"], thread={"messages": [{"role": "user", "content": "hi"}]}
    ),
    "runs.retrieve": lambda c, i: c.beta.threads.runs.retrieve(i["run"], thread_id=i["thread"]),
    "runs.update": lambda c, i: c.beta.threads.runs.update(
        i["run"], thread_id=i["thread"], metadata={"owner": "B"}
    ),
    "runs.cancel": lambda c, i: c.beta.threads.runs.cancel(i["run"], thread_id=i["thread"]),
    "runs.retrieve-via-B-thread": lambda c, i: c.beta.threads.runs.retrieve(
        i["run"], thread_id=i["b_thread"]
    ),
    "runs.update-via-B-thread": lambda c, i: c.beta.threads.runs.update(
        i["run"], thread_id=i["b_thread"], metadata={"owner": "B"}
    ),
    "runs.cancel-via-B-thread": lambda c, i: c.beta.threads.runs.cancel(
        i["run"], thread_id=i["b_thread"]
    ),
    "steps.list": lambda c, i: c.beta.threads.runs.steps.list(i["run"], thread_id=i["thread"]),
    "steps.list-via-B-thread": lambda c, i: c.beta.threads.runs.steps.list(
        i["run"], thread_id=i["b_thread"]
    ),
    "steps.retrieve": lambda c, i: c.beta.threads.runs.steps.retrieve(
        i["step"], thread_id=i["thread"], run_id=i["run"]
    ),
}


def _not_found(call: Call, client: openai.OpenAI, ids: Ids) -> openai.NotFoundError:
    with pytest.raises(openai.NotFoundError) as raised:
        call(client, ids)
    return raised.value


@pytest.mark.parametrize("name", list(SDK_CALLS))
def test_b_cannot_reach_a_through_the_sdk(projects: Projects, name: str) -> None:
    call = SDK_CALLS[name]
    before = projects.state()
    on_a = _not_found(call, projects.b, projects.a_ids | projects.b_ids)
    on_nothing = _not_found(call, projects.b, projects.random_ids | projects.b_ids)
    assert projects.state() == before, "B's request changed something"

    assert on_a.status_code == on_nothing.status_code == 404
    assert str(on_a) == _as_a(str(on_nothing), projects)
    assert on_a.body == json.loads(_as_a(json.dumps(on_nothing.body), projects))
    assert on_a.code == on_nothing.code and on_a.param == on_nothing.param
    assert any(a_id in str(on_a) for a_id in projects.a_ids.values())  # it is about A's object
    validate("ErrorResponse", on_a.response.json())


# --- B, through raw HTTP: the same, and list parameters pointing at A's objects -------------------


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str  # {asst} {thread} {msg} {run} {step}: A's (or random) ids; {b_*}: B's own
    status: int
    json: Any = None
    params: dict[str, str] | None = None


PROBES = [
    Probe("get-assistant", "GET", "/assistants/{asst}", 404),
    Probe("modify-assistant", "POST", "/assistants/{asst}", 404, {"metadata": {"owner": "B"}}),
    Probe("delete-assistant", "DELETE", "/assistants/{asst}", 404),
    Probe("get-thread", "GET", "/threads/{thread}", 404),
    Probe("modify-thread", "POST", "/threads/{thread}", 404, {"metadata": {}}),
    Probe("delete-thread", "DELETE", "/threads/{thread}", 404),
    Probe("list-messages", "GET", "/threads/{thread}/messages", 404),
    Probe("create-message", "POST", "/threads/{thread}/messages", 404,
          {"role": "assistant", "content": "forged"}),
    Probe("get-message", "GET", "/threads/{thread}/messages/{msg}", 404),
    Probe("modify-message-on-B-thread", "POST", "/threads/{b_thread}/messages/{msg}", 404,
          {"metadata": {}}),
    Probe("list-runs", "GET", "/threads/{thread}/runs", 404),
    Probe("create-run", "POST", "/threads/{thread}/runs", 404, {"assistant_id": "{b_asst}"}),
    Probe("create-run-with-A-assistant", "POST", "/threads/{b_thread}/runs", 404,
          {"assistant_id": "{asst}"}),
    Probe("create-thread-and-run", "POST", "/threads/runs", 404, {"assistant_id": "{asst}"}),
    Probe("get-run", "GET", "/threads/{thread}/runs/{run}", 404),
    Probe("cancel-run", "POST", "/threads/{thread}/runs/{run}/cancel", 404),
    Probe("list-steps", "GET", "/threads/{thread}/runs/{run}/steps", 404),
    Probe("get-step", "GET", "/threads/{thread}/runs/{run}/steps/{step}", 404),
    # A's ids as cursors in B's lists: unknown there, as any id would be.
    Probe("assistants-after-A", "GET", "/assistants", 400, params={"after": "{asst}"}),
    Probe("messages-after-A", "GET", "/threads/{b_thread}/messages", 400,
          params={"after": "{msg}"}),
    Probe("runs-before-A", "GET", "/threads/{b_thread}/runs", 400, params={"before": "{run}"}),
]  # fmt: skip


def _fill(value: Any, ids: Ids) -> Any:
    if isinstance(value, str):
        return value.format_map(ids)
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def _send(http: httpx.Client, probe: Probe, ids: Ids) -> httpx.Response:
    return http.request(
        probe.method,
        _fill(probe.path, ids),
        json=_fill(probe.json, ids),
        params=_fill(probe.params, ids),
    )


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_b_cannot_reach_a_over_http(projects: Projects, probe: Probe) -> None:
    before = projects.state()
    with projects.stack.http(projects.b_key) as http:
        on_a = _send(http, probe, projects.a_ids | projects.b_ids)
        on_nothing = _send(http, probe, projects.random_ids | projects.b_ids)
    assert projects.state() == before, "B's request changed something"

    assert on_a.status_code == on_nothing.status_code == probe.status, on_a.text
    validate("ErrorResponse", on_a.json())
    assert on_a.json() == json.loads(_as_a(on_nothing.text, projects))
    assert any(a_id in on_a.json()["error"]["message"] for a_id in projects.a_ids.values())


def test_lists_do_not_mix_projects(projects: Projects) -> None:
    a_ids, b_ids = projects.a_ids, projects.b_ids
    b_assistants = [x.id for x in projects.b.beta.assistants.list(limit=100)]
    assert b_ids["b_asst"] in b_assistants and a_ids["asst"] not in b_assistants
    a_assistants = [x.id for x in projects.a.beta.assistants.list(limit=100)]
    assert a_ids["asst"] in a_assistants and b_ids["b_asst"] not in a_assistants

    b_messages = projects.b.beta.threads.messages.list(b_ids["b_thread"])
    assert [m.id for m in b_messages] == [b_ids["b_msg"]]
    assert projects.b.beta.threads.runs.list(b_ids["b_thread"]).data == []
    with projects.stack.http(projects.b_key) as http:
        filtered = http.get(
            f"/threads/{b_ids['b_thread']}/messages", params={"run_id": a_ids["run"]}
        )
        assert filtered.status_code == 200 and filtered.json()["data"] == []
    # And B's objects are as invisible to A.
    with pytest.raises(openai.NotFoundError):
        projects.a.beta.threads.retrieve(b_ids["b_thread"])
    with pytest.raises(openai.NotFoundError):
        projects.a.beta.assistants.retrieve(b_ids["b_asst"])


def test_a_is_unchanged(projects: Projects) -> None:
    """After everything B tried (this runs last in the module), A's objects are as they were."""
    assert projects.a_view() == projects.a_before
    a = projects.a
    ids = projects.a_ids
    assert a.beta.assistants.retrieve(ids["asst"]).metadata == {"owner": "A"}
    assert a.beta.threads.retrieve(ids["thread"]).metadata == {"owner": "A"}
    message = a.beta.threads.messages.retrieve(ids["msg"], thread_id=ids["thread"])
    assert message.content[0].type == "text" and message.content[0].text.value == "A's secret"
    run = a.beta.threads.runs.retrieve(ids["run"], thread_id=ids["thread"])
    assert run.status == "completed" and run.metadata == {}
    assert [m.role for m in a.beta.threads.messages.list(ids["thread"])] == ["assistant", "user"]

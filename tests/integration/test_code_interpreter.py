"""code_interpreter in runs, end to end: a scripted model calls `python`, the code runs in the
thread's real sandbox session (nsjail + Jupyter kernel), the client sees a code_interpreter call.

Covers the seeds' math tutor with the overview's streaming handler unchanged, the CSV → chart
flow with files in and out, state across calls and runs, isolation between threads, a round
mixing code with a client function, `tool_choice`, and a worker SIGKILLed mid-execution.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads import ImageFile
from PIL import Image
from typing_extensions import override

from assistants.devserver import TemporalDevServer
from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec
from tests.conftest import started_stack
from tests.integration.test_streaming import read_sse, schema_for
from tests.support.contract import validate
from tests.support.stack import Stack


def _python(code: str) -> Reply:
    return Reply(tool_calls=[ToolCallSpec("python", json.dumps({"code": code}))])


def _code_calls(client: openai.OpenAI, thread_id: str, run_id: str) -> list[Any]:
    steps = client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id, order="asc")
    calls = []
    for step in steps.data:
        validate("RunStepObject", step.model_dump(mode="json", exclude_unset=True))
        if step.step_details.type == "tool_calls":
            assert step.status == "completed"
            calls += [c for c in step.step_details.tool_calls if c.type == "code_interpreter"]
    return calls


def _logs(call: Any) -> str:
    return "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")


def _tool_message(request: dict[str, Any]) -> str:
    tool_turns = [m for m in request["messages"] if m["role"] == "tool"]
    return str(tool_turns[-1]["content"])


# --- the seeds' math tutor, streamed with the overview's handler ---------------------------------


class EventHandler(AssistantEventHandler):  # verbatim from the seeds' overview
    @override
    def on_text_created(self, text) -> None:  # type: ignore[no-untyped-def]
        print("\nassistant > ", end="", flush=True)

    @override
    def on_text_delta(self, delta, snapshot):  # type: ignore[no-untyped-def]
        print(delta.value, end="", flush=True)

    def on_tool_call_created(self, tool_call):  # type: ignore[no-untyped-def]
        print(f"\nassistant > {tool_call.type}\n", flush=True)

    def on_tool_call_delta(self, delta, snapshot):  # type: ignore[no-untyped-def]
        if delta.type == "code_interpreter":
            if delta.code_interpreter.input:
                print(delta.code_interpreter.input, end="", flush=True)
            if delta.code_interpreter.outputs:
                print("\n\noutput >", flush=True)
                for output in delta.code_interpreter.outputs:
                    if output.type == "logs":
                        print(f"\n{output.logs}", flush=True)


TUTOR_CODE_NO_SYMPY = "x = (14 - 11) / 3\nprint('solving 3x + 11 = 14')\nx"


def test_math_tutor_streams_code_and_logs(
    client: openai.OpenAI, model: ScriptedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assistant = client.beta.assistants.create(
        name="Math Tutor",
        instructions="You are a personal math tutor. Write and run code to answer math questions.",
        tools=[{"type": "code_interpreter"}],
        model="gpt-4o",
    )
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread_id=thread.id,
        role="user",
        content="I need to solve the equation `3x + 11 = 14`. Can you help me?",
    )
    model.enqueue(
        _python(TUTOR_CODE_NO_SYMPY),
        Reply(text="The solution is x = 1.", chunk_chars=6),
    )
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        instructions="Please address the user as Jane Doe. The user has a premium account.",
        event_handler=EventHandler(),
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
    printed = capsys.readouterr().out
    assert run.status == "completed" and run.required_action is None
    # The handler printed the call's type, then its code as it came, then its logs.
    assert "\nassistant > code_interpreter\n" in printed
    code_at = printed.index(TUTOR_CODE_NO_SYMPY)
    output_at = printed.index("output >")
    assert code_at < output_at < printed.index("solving 3x + 11 = 14\n1.0")
    assert printed.endswith("assistant > The solution is x = 1.")

    # The model was offered `python(code)`, and its second request read the result.
    first, second = model.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["python"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["code"]
    assert "solving 3x + 11 = 14\n1.0" in _tool_message(second)
    call_turn = [m for m in second["messages"] if m.get("tool_calls")][-1]
    assert json.loads(call_turn["tool_calls"][0]["function"]["arguments"]) == {
        "code": TUTOR_CODE_NO_SYMPY
    }

    [call] = _code_calls(client, thread.id, run.id)
    assert call.code_interpreter.input == TUTOR_CODE_NO_SYMPY
    assert _logs(call) == "solving 3x + 11 = 14\n1.0"


# --- CSV → chart ---------------------------------------------------------------------------------

CHART_CODE = """import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv('/mnt/data/sales.csv')
df.plot(x='month', y='revenue', kind='bar')
plt.savefig('/mnt/data/chart.png')
df.assign(double=df.revenue * 2).to_csv('/mnt/data/doubled.csv', index=False)
plt.show()
print(df.revenue.sum())"""


def test_csv_to_chart(client: openai.OpenAI, model: ScriptedModel) -> None:
    csv = b"month,revenue\njan,10\nfeb,20\nmar,15\n"
    uploaded = client.files.create(file=("sales.csv", csv), purpose="assistants")
    assistant = client.beta.assistants.create(
        model="gpt-4o",
        instructions="Analyse data with code.",
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [uploaded.id]}},
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Chart the revenue by month."}]
    )
    reply = "Revenue totals 45. [Download the table](sandbox:/mnt/data/doubled.csv)."
    model.enqueue(_python(CHART_CODE), Reply(text=reply))
    images_done: list[str] = []

    class Images(AssistantEventHandler):
        @override
        def on_image_file_done(self, image_file: ImageFile) -> None:
            images_done.append(image_file.file_id)

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Images()
    ) as stream:
        stream.until_done()
        run = stream.get_final_run()
        [streamed_message] = stream.get_final_messages()
    assert run.status == "completed", run.last_error

    [call] = _code_calls(client, thread.id, run.id)
    assert _logs(call).strip() == "45"
    images = [o.image.file_id for o in call.code_interpreter.outputs if o.type == "image"]
    assert len(images) == 1
    png = client.files.content(images[0]).read()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size[0] > 100
    image_file = client.files.retrieve(images[0])
    assert image_file.purpose == "assistants_output" and image_file.bytes == len(png)

    [message] = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    blocks = [b.type for b in message.content]
    assert blocks == ["text", "image_file"]
    assert message.content[1].image_file.file_id == images[0]  # type: ignore[union-attr]
    assert images_done == images  # the SDK's on_image_file_done fired for the streamed block
    assert streamed_message.content == message.content

    # The files the code wrote are Files too, downloadable byte-identical.
    outputs = {
        f.filename: f
        for f in client.files.list(purpose="assistants_output").data
        if f.filename in ("chart.png", "doubled.csv") and f.created_at >= run.created_at
    }
    assert set(outputs) == {"chart.png", "doubled.csv"}
    doubled = client.files.content(outputs["doubled.csv"].id).read()
    assert doubled == b"month,revenue,double\njan,10,20\nfeb,20,40\nmar,15,30\n"
    assert client.files.content(outputs["chart.png"].id).read().startswith(b"\x89PNG\r\n")
    # The link to it in the reply carries a file_path annotation.
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.value == reply
    [annotation] = text.annotations
    assert annotation.type == "file_path"
    assert annotation.file_path.file_id == outputs["doubled.csv"].id  # type: ignore[union-attr]
    link = "sandbox:/mnt/data/doubled.csv"
    assert reply[annotation.start_index : annotation.end_index] == annotation.text == link
    # The model was told what it saw, not sent the bytes.
    assert f"[image {images[0]} displayed to the user]" in _tool_message(model.requests[-1])


def test_raw_stream_of_a_code_interpreter_run(
    stack: Stack, client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Plot a line."}])
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('drawn')"
    model.enqueue(_python(code), Reply(text="Done."))
    with (
        stack.http() as http,
        http.stream(
            "POST",
            f"/threads/{thread.id}/runs",
            json={"assistant_id": assistant.id, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        frames = read_sse(response)[:-1]
    for frame in frames:
        validate(schema_for(frame["event"]), json.loads(frame["data"]))
    step_deltas = [
        json.loads(f["data"])["delta"]["step_details"]["tool_calls"][0]
        for f in frames
        if f["event"] == "thread.run.step.delta"
    ]
    head, *rest = step_deltas
    assert head == {
        "index": 0,
        "id": head["id"],
        "type": "code_interpreter",
        "code_interpreter": {"input": "", "outputs": []},
    }
    inputs = [d["code_interpreter"]["input"] for d in rest if "input" in d["code_interpreter"]]
    assert "".join(inputs) == code
    [outputs] = [
        d["code_interpreter"]["outputs"] for d in rest if "outputs" in d["code_interpreter"]
    ]
    assert outputs[0] == {"index": 0, "type": "logs", "logs": "drawn\n"}
    assert outputs[1]["index"] == 1 and outputs[1]["type"] == "image"
    image_blocks = [
        block
        for f in frames
        if f["event"] == "thread.message.delta"
        for block in json.loads(f["data"])["delta"]["content"]
        if block["type"] == "image_file"
    ]
    assert image_blocks == [{"index": 1, "type": "image_file", "image_file": outputs[1]["image"]}]
    names = [f["event"] for f in frames]
    assert "thread.run.requires_action" not in names
    assert names.index("thread.run.step.completed") < names.index("thread.message.created")


# --- state, isolation, mixed rounds, tool_choice -------------------------------------------------

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_temperature",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_state_across_calls_and_runs_isolated_per_thread(
    client: openai.OpenAI, model: ScriptedModel
) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "code_interpreter"}, WEATHER]
    )
    first = client.beta.threads.create(messages=[{"role": "user", "content": "Remember 41."}])
    notes = client.files.create(file=("notes.txt", b"only here"), purpose="assistants")
    other = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "What is x?",
                "attachments": [{"file_id": notes.id, "tools": [{"type": "code_interpreter"}]}],
            }
        ]
    )

    # Two calls in one run (two rounds), then a second run: one kernel for the thread.
    model.enqueue(_python("x = 41"), _python("x += 1\nx"), Reply(text="x is 42."))
    run = client.beta.threads.runs.create_and_poll(
        thread_id=first.id,
        assistant_id=assistant.id,
        tool_choice={"type": "code_interpreter"},
    )
    assert run.status == "completed", run.last_error
    assert model.requests[-3]["tool_choice"] == {"type": "function", "function": {"name": "python"}}
    calls = _code_calls(client, first.id, run.id)
    assert [_logs(c) for c in calls] == ["", "42"]
    assert calls[0].code_interpreter.outputs == []

    # A round mixing code and a client function: the code runs, only the function waits.
    client.beta.threads.messages.create(thread_id=first.id, role="user", content="And Paris?")
    model.enqueue(
        Reply(
            tool_calls=[
                ToolCallSpec("python", json.dumps({"code": "x * 2"})),
                ToolCallSpec("get_temperature", '{"city": "Paris"}'),
            ]
        ),
        Reply(text="84, and 20 degrees."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=first.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    assert run.required_action is not None
    pending = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in pending] == ["get_temperature"]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=first.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": pending[0].id, "output": "20"}],
    )
    assert run.status == "completed", run.last_error
    [call] = _code_calls(client, first.id, run.id)
    assert _logs(call) == "84"
    tools = [m for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert [t["content"] for t in tools[-2:]] == ["84", "20"]

    # The other thread has its own kernel: no `x`; only its own attachment in /mnt/data.
    model.enqueue(
        _python("import os\nprint(os.listdir('/mnt/data'), open('/mnt/data/notes.txt').read())\nx"),
        Reply(text="No x here."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    [call] = _code_calls(client, other.id, run.id)
    assert _logs(call).startswith("['notes.txt'] only here\n") and "NameError" in _logs(call)


# --- a worker dies during an execution -----------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def crash_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ci-crash",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
    ) as stack:
        yield stack


IDLE_S = 3.0


@pytest.fixture(params=["sqlite", "postgres"])
def idle_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ci-idle",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_SANDBOX_SESSION_IDLE_S": str(IDLE_S)},
    ) as stack:
        yield stack


def _jailed_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and b"nsjail" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def test_worker_killed_during_execution(crash_stack: Stack, model: ScriptedModel) -> None:
    client = crash_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Count once."}])
    model.enqueue(
        _python(
            "with open('/mnt/data/count.txt', 'a') as f:\n    f.write('x')\n"
            "import time\ntime.sleep(120)"
        ),
        Reply(text="The session was lost; I will not retry."),
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    [worker] = crash_stack.workers
    deadline = time.monotonic() + 60
    while not _jailed_children(worker.pid):
        assert time.monotonic() < deadline, "the sandbox never started"
        time.sleep(0.1)
    time.sleep(2.0)  # the cell is running (started with the kernel, then sleeps)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    crash_stack.workers.clear()
    crash_stack.start_worker()

    deadline = time.monotonic() + 90
    while (run := client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status not in (
        "completed",
        "failed",
    ):
        assert time.monotonic() < deadline, run.status
        time.sleep(0.5)
    assert run.status == "completed", run.last_error
    [call] = _code_calls(client, thread.id, run.id)
    assert _logs(call).startswith("[session lost: the sandbox host stopped responding;")
    assert "[session lost:" in _tool_message(model.requests[-1])

    # The next call gets a new session on the new worker; the code did not run again there.
    model.enqueue(
        _python(
            "import os\np = '/mnt/data/count.txt'\n"
            "print(open(p).read() if os.path.exists(p) else 'absent')"
        ),
        Reply(text="Nothing ran twice."),
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    [call] = _code_calls(client, thread.id, run.id)
    assert _logs(call) == "absent\n"


def test_idle_session_expires_on_its_timer(idle_stack: Stack, model: ScriptedModel) -> None:
    client = idle_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Keep x."}])
    [worker] = idle_stack.workers
    model.enqueue(_python("x = 1\nx"), Reply(text="Kept."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    assert _jailed_children(worker.pid), "the session's sandbox runs"

    # The session workflow's durable idle timer closes the sandbox, without any call.
    deadline = time.monotonic() + IDLE_S + 30
    while _jailed_children(worker.pid):
        assert time.monotonic() < deadline, "the idle session was never closed"
        time.sleep(0.2)

    model.enqueue(_python("x"), Reply(text="x is gone."))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run.last_error
    [call] = _code_calls(client, thread.id, run.id)
    assert "NameError" in _logs(call)


@pytest.fixture(params=["sqlite", "postgres"])
def no_sandbox_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ci-none",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_SANDBOX_PYTHON": "/nonexistent/bin/python"},
    ) as stack:
        yield stack


def test_no_sandbox_fails_the_run_clearly(no_sandbox_stack: Stack, model: ScriptedModel) -> None:
    client = no_sandbox_stack.client()
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Run 1 + 1."}])
    model.enqueue(_python("1 + 1"))
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert run.last_error.message.startswith("code interpreter unavailable:")


@pytest.fixture(params=["sqlite", "postgres"])
def split_stack(
    request: pytest.FixtureRequest,
    temporal: TemporalDevServer,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with started_stack(
        request,
        name="ci-split",
        temporal_address=temporal.address,
        model=model,
        tmp_path_factory=tmp_path_factory,
        overrides={"ASSISTANTS_SANDBOX_WORKER": "false"},
    ) as stack:
        yield stack


def test_code_runs_on_a_separate_sandbox_host(split_stack: Stack, model: ScriptedModel) -> None:
    """Model workers without sandboxes, plus a `durable-assistants sandbox-worker` process."""
    host = split_stack._spawn("sandbox-worker", "sandbox.log")
    try:
        log = split_stack.workdir / "sandbox.log"
        deadline = time.monotonic() + 60
        while b"sandbox host ready" not in log.read_bytes():
            assert host.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = split_stack.client()
        assistant = client.beta.assistants.create(
            model="gpt-4o", tools=[{"type": "code_interpreter"}]
        )
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "2 ** 10?"}])
        model.enqueue(_python("2 ** 10"), Reply(text="1024."))
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id
        )
        assert run.status == "completed", run.last_error
        [call] = _code_calls(client, thread.id, run.id)
        assert _logs(call) == "1024"
        [worker] = split_stack.workers
        assert _jailed_children(host.pid) and not _jailed_children(worker.pid)
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(30)
